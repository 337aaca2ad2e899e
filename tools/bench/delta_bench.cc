// dim-delta-bench: for pairs of old/new versions of a file, how many bytes
// and how much CPU each way of sending the new version to a receiver that
// holds the old one costs. Run by tools/bench/delta_bench.sh, which makes
// the pairs and the report; docs/design.md says what was chosen from it.
//
// Methods (wire = bytes the receiver gets, plus what it sends for rsync):
//   whole-zL        the new file, zstd level L (what a fetch without base costs)
//   patch-zL        zstd level L with the old file as prefix (`zstd --patch-from`),
//                   long-distance matching, window over both files
//   rsync           librsync: signature of the old file (receiver), delta
//                   against it (sender), patch (receiver); wire = signature + delta
//   rsync+z3        the same with the delta compressed by zstd level 3 (like rsync -z)
//   chunks          dim before this change: the new file's content-defined chunks
//                   the old file lacks, in one pack (zstd 9, long-distance)
//   chunk-delta-zL  each of those chunks as a patch against the old chunks
//                   ChunkDeltaBases picks (max-base bytes), zstd level L; chunks
//                   without a base go whole in a pack
// CPU is thread CPU time of the sender's and the receiver's work, measured
// once per method; results are verified byte for byte.
#include <librsync.h>
#include <time.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dim/env.h"
#include "dim/object_delta.h"

namespace {

// Every method is judged by the same row: what traveled and what it cost.
struct Row {
  std::string method;
  uint64_t wire = 0;
  double send_cpu = 0, recv_cpu = 0;
  std::string note;
};

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Runs fn and adds the CPU seconds it took to *acc.
template <typename F>
auto Timed(double* acc, F&& fn) {
  double t0 = CpuSeconds();
  auto r = fn();
  *acc += CpuSeconds() - t0;
  return r;
}

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "dim-delta-bench: %s\n", msg.c_str());
  std::exit(2);
}

void Check(bool ok, const std::string& what) {
  if (!ok) Die(what + ": the receiver's copy differs from the new file");
}

template <typename T>
T Must(dim::Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(*r);
}

std::string Compress(std::string_view in, int level, bool long_window) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  if (long_window) ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1);
  std::string out(ZSTD_compressBound(in.size()), '\0');
  size_t n = ZSTD_compress2(cctx.get(), out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) Die(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string Decompress(std::string_view in) {
  unsigned long long size = ZSTD_getFrameContentSize(in.data(), in.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    Die("zstd: no content size");
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 31);
  std::string out(size, '\0');
  size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n) || n != size) Die("zstd: cannot decompress");
  return out;
}

// ---- librsync, in memory ----

// Feeds all of `in` to a librsync job and collects its output.
std::string RunJob(rs_job_t* job, std::string_view in) {
  std::string out;
  rs_buffers_t buf{};
  buf.next_in = const_cast<char*>(in.data());
  buf.avail_in = in.size();
  buf.eof_in = 1;
  char block[1 << 16];
  rs_result r;
  do {
    buf.next_out = block;
    buf.avail_out = sizeof block;
    r = rs_job_iter(job, &buf);
    out.append(block, sizeof block - buf.avail_out);
  } while (r == RS_BLOCKED);
  if (r != RS_DONE) Die(std::string("librsync: ") + rs_strerror(r));
  rs_job_free(job);
  return out;
}

rs_result CopyFromBasis(void* opaque, rs_long_t pos, size_t* len, void** buf) {
  auto* basis = static_cast<std::string_view*>(opaque);
  if (pos < 0 || static_cast<uint64_t>(pos) > basis->size()) return RS_INPUT_ENDED;
  *len = std::min(*len, basis->size() - static_cast<size_t>(pos));
  std::memcpy(*buf, basis->data() + pos, *len);
  return RS_DONE;
}

void Rsync(std::string_view old_data, std::string_view new_data, std::vector<Row>* rows) {
  Row plain{"rsync"}, z{"rsync+z3"};
  rs_magic_number magic = RS_RK_BLAKE2_SIG_MAGIC;
  size_t block_len = 0,
         strong_len = static_cast<size_t>(-1);  // recommended block, smallest safe sum
  if (rs_sig_args(static_cast<rs_long_t>(old_data.size()), &magic, &block_len, &strong_len) !=
      RS_DONE) {
    Die("librsync: rs_sig_args");
  }
  std::string sig = Timed(&plain.recv_cpu, [&] {
    return RunJob(rs_sig_begin(block_len, strong_len, magic), old_data);
  });
  std::string delta = Timed(&plain.send_cpu, [&] {
    rs_signature_t* sums = nullptr;
    RunJob(rs_loadsig_begin(&sums), sig);
    if (rs_build_hash_table(sums) != RS_DONE) Die("librsync: rs_build_hash_table");
    std::string d = RunJob(rs_delta_begin(sums), new_data);
    rs_free_sumset(sums);
    return d;
  });
  std::string_view basis = old_data;
  std::string rebuilt =
      Timed(&plain.recv_cpu, [&] { return RunJob(rs_patch_begin(CopyFromBasis, &basis), delta); });
  Check(rebuilt == new_data, "rsync");
  plain.wire = sig.size() + delta.size();
  char note[96];
  std::snprintf(note, sizeof note, "block %zu, signature %zu B", block_len, sig.size());
  plain.note = note;

  z.send_cpu = plain.send_cpu;
  z.recv_cpu = plain.recv_cpu;
  std::string zdelta = Timed(&z.send_cpu, [&] { return Compress(delta, 3, false); });
  Check(Timed(&z.recv_cpu, [&] { return Decompress(zdelta); }) == delta, "rsync+z3");
  z.wire = sig.size() + zdelta.size();
  z.note = plain.note;
  rows->push_back(plain);
  rows->push_back(z);
}

// ---- zstd, whole file ----

void Whole(std::string_view new_data, int level, std::vector<Row>* rows) {
  Row r{"whole-z" + std::to_string(level)};
  std::string c = Timed(&r.send_cpu, [&] { return Compress(new_data, level, false); });
  Check(Timed(&r.recv_cpu, [&] { return Decompress(c); }) == new_data, r.method);
  r.wire = c.size();
  rows->push_back(r);
}

void Patch(std::string_view old_data, std::string_view new_data, int level,
           std::vector<Row>* rows) {
  Row r{"patch-z" + std::to_string(level)};
  std::string p = Timed(
      &r.send_cpu, [&] { return Must(dim::EncodePatch(old_data, new_data, level), r.method); });
  std::string back = Timed(
      &r.recv_cpu, [&] { return Must(dim::DecodePatch(old_data, p, new_data.size()), r.method); });
  Check(back == new_data, r.method);
  r.wire = p.size();
  rows->push_back(r);
}

// ---- dim's chunks ----

struct Chunked {
  dim::ChunkList old_list, new_list;
  std::set<dim::Digest> old_ids;
  std::vector<size_t> lacking;  // new chunk indices the receiver lacks, first occurrence each
};

Chunked ChunkBoth(std::string_view old_data, std::string_view new_data) {
  Chunked c{dim::ChunkBytes(old_data), dim::ChunkBytes(new_data), {}, {}};
  for (const auto& ch : c.old_list.chunks) c.old_ids.insert(ch.id);
  std::set<dim::Digest> seen;
  for (size_t i = 0; i < c.new_list.chunks.size(); i++) {
    const dim::Digest& id = c.new_list.chunks[i].id;
    if (!c.old_ids.count(id) && seen.insert(id).second) c.lacking.push_back(i);
  }
  return c;
}

std::string_view ChunkOf(std::string_view data, const dim::ChunkList& l, size_t i) {
  return data.substr(l.offsets[i], l.chunks[i].length);
}

// A pack as imaged sends it: id, kind, length and body per object, zstd 9 with
// long-distance matching over the whole answer.
uint64_t PackBytes(std::string_view data, const dim::ChunkList& l, const std::vector<size_t>& which,
                   Row* r) {
  if (which.empty()) return 0;
  std::string raw;
  for (size_t i : which) {
    raw += l.chunks[i].id.Raw();
    raw.push_back(1);
    uint64_t n = l.chunks[i].length;
    for (int b = 0; b < 8; b++) raw.push_back(static_cast<char>(n >> (8 * b)));
    raw += ChunkOf(data, l, i);
  }
  std::string packed = Timed(&r->send_cpu, [&] { return Compress(raw, 9, true); });
  Check(Timed(&r->recv_cpu, [&] { return Decompress(packed); }) == raw, r->method);
  return packed.size();
}

void Chunks(std::string_view new_data, const Chunked& c, std::vector<Row>* rows) {
  Row r{"chunks"};
  r.wire = PackBytes(new_data, c.new_list, c.lacking, &r);
  r.note = std::to_string(c.lacking.size()) + " of " + std::to_string(c.new_list.chunks.size()) +
           " chunks changed";
  rows->push_back(r);
}

void ChunkDeltas(std::string_view old_data, std::string_view new_data, const Chunked& c, int level,
                 uint64_t max_base, std::vector<Row>* rows) {
  Row r{"chunk-delta-z" + std::to_string(level)};
  if (max_base != dim::kChunkDeltaBase) r.method += "-b" + std::to_string(max_base >> 20) + "M";
  auto bases = dim::ChunkDeltaBases(
      c.old_list, c.new_list, [&](const dim::Digest& id) { return !c.old_ids.count(id); },
      max_base);
  std::map<dim::Digest, size_t> old_index;
  for (size_t i = 0; i < c.old_list.chunks.size(); i++)
    old_index.emplace(c.old_list.chunks[i].id, i);
  std::vector<size_t> whole;
  uint64_t base_bytes = 0;
  for (size_t i : c.lacking) {
    auto b = bases.find(c.new_list.chunks[i].id);
    if (b == bases.end()) {
      whole.push_back(i);
      continue;
    }
    // Both sides concatenate the same old chunks.
    std::string base;
    for (const auto& id : b->second) base += ChunkOf(old_data, c.old_list, old_index.at(id));
    base_bytes += base.size();
    std::string_view target = ChunkOf(new_data, c.new_list, i);
    std::string p =
        Timed(&r.send_cpu, [&] { return Must(dim::EncodePatch(base, target, level), r.method); });
    std::string back = Timed(
        &r.recv_cpu, [&] { return Must(dim::DecodePatch(base, p, target.size()), r.method); });
    Check(back == target, r.method);
    r.wire += p.size();
  }
  r.wire += PackBytes(new_data, c.new_list, whole, &r);
  char note[96];
  std::snprintf(note, sizeof note, "%zu patches over %.1f MiB of bases, %zu whole",
                c.lacking.size() - whole.size(), static_cast<double>(base_bytes) / (1 << 20),
                whole.size());
  r.note = note;
  rows->push_back(r);
}

std::vector<int> ParseList(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    char* end;
    out.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    if (end == p) Die(std::string("not a list of numbers: ") + s);
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

void Usage() {
  std::fprintf(
      stderr,
      "usage: dim-delta-bench [--levels 3,9,19] [--chunk-levels 3,9,19] [--max-base-mib 2]\n"
      "                       [--no-rsync] LABEL OLD NEW [LABEL OLD NEW ...]\n"
      "Prints one tab-separated line per pair and method: label, old bytes, new bytes,\n"
      "method, wire bytes, sender CPU s, receiver CPU s, note.\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> levels{3, 9, 19}, chunk_levels{3, 9, 19},
      max_bases{static_cast<int>(dim::kChunkDeltaBase >> 20)};
  bool rsync = true;
  int i = 1;
  for (; i < argc && std::strncmp(argv[i], "--", 2) == 0; i++) {
    std::string opt = argv[i];
    if (opt == "--no-rsync") {
      rsync = false;
      continue;
    }
    if (i + 1 >= argc) Usage();
    if (opt == "--levels")
      levels = ParseList(argv[++i]);
    else if (opt == "--chunk-levels")
      chunk_levels = ParseList(argv[++i]);
    else if (opt == "--max-base-mib")
      max_bases = ParseList(argv[++i]);
    else
      Usage();
  }
  if (i == argc || (argc - i) % 3 != 0) Usage();
  dim::Env* env = dim::Env::Posix();
  for (; i < argc; i += 3) {
    std::string label = argv[i];
    std::string old_data = Must(env->ReadFile(argv[i + 1]), argv[i + 1]);
    std::string new_data = Must(env->ReadFile(argv[i + 2]), argv[i + 2]);
    std::vector<Row> rows;
    for (int l : levels) Whole(new_data, l, &rows);
    for (int l : levels) Patch(old_data, new_data, l, &rows);
    if (rsync) Rsync(old_data, new_data, &rows);
    Chunked c = ChunkBoth(old_data, new_data);
    Chunks(new_data, c, &rows);
    for (int mb : max_bases) {
      for (int l : chunk_levels)
        ChunkDeltas(old_data, new_data, c, l, static_cast<uint64_t>(mb) << 20, &rows);
    }
    for (const auto& r : rows) {
      std::printf("%s\t%zu\t%zu\t%s\t%llu\t%.3f\t%.3f\t%s\n", label.c_str(), old_data.size(),
                  new_data.size(), r.method.c_str(), static_cast<unsigned long long>(r.wire),
                  r.send_cpu, r.recv_cpu, r.note.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}
