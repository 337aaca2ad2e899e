// Object deltas: a patch rebuilds exactly its target from the same base and
// nothing from another one, and a changed chunk of a large file is encoded
// against the old bytes at the same place, however much the edit shifted.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include "dim/object_delta.h"

namespace {

std::string Random(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

uint64_t Bytes(const dim::ChunkList& l, const std::vector<dim::Digest>& ids) {
  uint64_t n = 0;
  for (const auto& id : ids) {
    for (const auto& c : l.chunks) {
      if (c.id == id) {
        n += c.length;
        break;
      }
    }
  }
  return n;
}

// The old bytes a base names, concatenated as both ends of a replication do.
std::string BaseBytes(std::string_view data, const dim::ChunkList& l,
                      const std::vector<dim::Digest>& ids) {
  std::string out;
  for (const auto& id : ids) {
    for (size_t i = 0; i < l.chunks.size(); i++) {
      if (l.chunks[i].id == id) {
        out += data.substr(l.offsets[i], l.chunks[i].length);
        break;
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("a patch rebuilds its target from the same base, and is small for a small edit") {
  std::string base = Random(200000, 1);
  std::string target = base.substr(0, 100000) + "inserted line\n" + base.substr(100000);
  auto patch = dim::EncodePatch(base, target, 19);
  REQUIRE(patch.ok());
  CHECK(patch->size() < 200);  // random data: whole, it would cost 200 kB
  auto back = dim::DecodePatch(base, *patch, target.size());
  REQUIRE(back.ok());
  CHECK(*back == target);

  SUBCASE("a result larger than allowed is refused before it is built") {
    auto big = dim::DecodePatch(base, *patch, target.size() - 1);
    CHECK(big.status().code() == dim::Code::kCorruption);
  }
  SUBCASE("another base does not rebuild the target") {
    std::string other = base;
    other[100] ^= 1;
    auto wrong = dim::DecodePatch(other, *patch, target.size());
    CHECK((!wrong.ok() || *wrong != target));
  }
  SUBCASE("garbage is not a patch") {
    CHECK(!dim::DecodePatch(base, "not a zstd frame", 1 << 20).ok());
    CHECK(!dim::DecodePatch(base, patch->substr(0, patch->size() / 2), target.size()).ok());
  }
  SUBCASE("an empty base works like plain compression") {
    auto p = dim::EncodePatch("", target, 3);
    REQUIRE(p.ok());
    CHECK(*dim::DecodePatch("", *p, target.size()) == target);
  }
}

TEST_CASE("chunk delta bases: an insertion in the middle of a large file") {
  std::string before = Random(12 << 20, 2);
  std::string now = before.substr(0, 6 << 20) + Random(3000, 3) + before.substr(6 << 20);
  dim::ChunkList old_list = dim::ChunkBytes(before), new_list = dim::ChunkBytes(now);
  std::set<dim::Digest> have;
  for (const auto& c : old_list.chunks) have.insert(c.id);
  auto lacks = [&](const dim::Digest& id) { return !have.count(id); };
  auto bases = dim::ChunkDeltaBases(old_list, new_list, lacks, dim::kChunkDeltaBase);

  std::vector<size_t> changed;
  for (size_t i = 0; i < new_list.chunks.size(); i++) {
    if (lacks(new_list.chunks[i].id)) changed.push_back(i);
  }
  REQUIRE(!changed.empty());
  CHECK(changed.size() <= 2);  // content-defined chunks resynchronize after the edit
  uint64_t patched = 0, whole = 0;
  for (size_t i : changed) {
    const auto& c = new_list.chunks[i];
    REQUIRE(bases.count(c.id));
    CHECK(Bytes(old_list, bases[c.id]) <= dim::kChunkDeltaBase);
    std::string base = BaseBytes(before, old_list, bases[c.id]);
    std::string target = now.substr(new_list.offsets[i], c.length);
    auto p = dim::EncodePatch(base, target, dim::kPatchLevel);
    REQUIRE(p.ok());
    CHECK(*dim::DecodePatch(base, *p, target.size()) == target);
    patched += p->size();
    whole += target.size();
  }
  // The insertion is 3000 random bytes; the changed chunks are at least 128 KiB.
  CHECK(patched < 3000 + 1000);
  CHECK(whole >= (128u << 10));
  for (const auto& [id, base] : bases) CHECK(lacks(id));  // only what the receiver lacks
}

TEST_CASE("chunk delta bases: a block inserted early maps later changes past it") {
  // 8 MiB inserted at 2 MiB and a one-byte edit at old offset 14 MiB (new
  // 22 MiB) of a 20 MiB file: the edit's base is the old chunk at 14 MiB.
  std::string before = Random(20 << 20, 4);
  std::string now = before.substr(0, 2 << 20) + Random(8 << 20, 5) + before.substr(2 << 20);
  size_t edit = (14 << 20) + (8 << 20);  // old offset 14 MiB, in the new file
  now[edit] ^= 0x55;
  dim::ChunkList old_list = dim::ChunkBytes(before), new_list = dim::ChunkBytes(now);
  std::set<dim::Digest> have;
  for (const auto& c : old_list.chunks) have.insert(c.id);
  auto bases = dim::ChunkDeltaBases(
      old_list, new_list, [&](const dim::Digest& id) { return !have.count(id); }, 4 << 20);
  uint64_t start = 0;
  size_t i = new_list.Find(edit, &start);
  const auto& c = new_list.chunks[i];
  REQUIRE(bases.count(c.id));
  std::string base = BaseBytes(before, old_list, bases[c.id]);
  std::string target = now.substr(start, c.length);
  auto p = dim::EncodePatch(base, target, 3);
  REQUIRE(p.ok());
  CHECK(p->size() < 200);  // one flipped byte
  for (const auto& [id, b] : bases) CHECK(Bytes(old_list, b) <= (4u << 20));
}

TEST_CASE("chunk delta bases: no old bytes, no base; holes are never bases") {
  std::string now = Random(3 << 20, 6);
  dim::ChunkList empty, new_list = dim::ChunkBytes(now);
  empty.Finalize();
  CHECK(dim::ChunkDeltaBases(
            empty, new_list, [](const dim::Digest&) { return true; }, 4 << 20)
            .empty());

  dim::ChunkList holes;
  holes.size = 3 << 20;
  holes.chunks.push_back({3u << 20, true, dim::Digest{}});
  holes.Finalize();
  CHECK(dim::ChunkDeltaBases(
            holes, new_list, [](const dim::Digest&) { return true; }, 4 << 20)
            .empty());
}
