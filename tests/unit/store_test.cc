// Object store: round trips, chunking, holes, verification and fault injection.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "dim/object_store.h"
#include "dim/owner.h"
#include "dim/parallel.h"
#include "dim/store.h"
#include "store/chunker.h"
#include "test_util.h"

using dim::Digest;
using dim::ObjectStore;
using dimtest::TempDir;

namespace {

std::unique_ptr<ObjectStore> MakeStore(const TempDir& dir, dim::Env* env = dim::Env::Posix()) {
  REQUIRE(ObjectStore::Create(env, dir.path()).ok());
  auto s = ObjectStore::Open(env, dir.path());
  REQUIRE(s.ok());
  return std::move(*s);
}

Digest PutFileAt(ObjectStore& store, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  struct stat st;
  ::fstat(fd, &st);
  auto batch = store.NewBatch();
  REQUIRE(batch.ok());
  auto id = (*batch)->PutFile(fd, static_cast<uint64_t>(st.st_size),
                              static_cast<uint64_t>(st.st_blocks) * 512 <
                                  static_cast<uint64_t>(st.st_size),
                              path);
  ::close(fd);
  REQUIRE(id.ok());
  REQUIRE((*batch)->Commit().ok());
  return *id;
}

std::string ReadWhole(const ObjectStore& store, const Digest& id, uint64_t size) {
  std::string out(size, '\0');
  auto s = store.ReadFile(id, "test", [&](uint64_t off, std::string_view d) {
    REQUIRE(off + d.size() <= size);
    out.replace(off, d.size(), d);
    return dim::Status::Ok();
  });
  REQUIRE(s.ok());
  return out;
}

}  // namespace

TEST_CASE("a blob is named by the SHA-256 of its content and reads back verified") {
  TempDir dir;
  auto store = MakeStore(dir);
  auto batch = store->NewBatch();
  REQUIRE(batch.ok());
  auto id = (*batch)->PutBlob("hello\n");
  REQUIRE(id.ok());
  // sha256sum of "hello\n": an administrator can check objects with standard tools.
  CHECK(id->Hex() == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  CHECK_FALSE(store->Has(*id));  // staged, not yet visible
  REQUIRE((*batch)->Commit().ok());
  CHECK(store->Has(*id));
  auto back = store->ReadBlob(*id);
  REQUIRE(back.ok());
  CHECK(*back == "hello\n");
}

TEST_CASE("identical content is stored once") {
  TempDir dir;
  auto store = MakeStore(dir);
  auto batch = store->NewBatch();
  std::string text(100000, 'a');
  auto a = (*batch)->PutBlob(text);
  auto b = (*batch)->PutBlob(text);
  REQUIRE((a.ok() && b.ok()));
  CHECK(*a == *b);
  CHECK((*batch)->stats().objects_new == 1);
  REQUIRE((*batch)->Commit().ok());
  auto batch2 = store->NewBatch();
  REQUIRE((*batch2)->PutBlob(text).ok());
  CHECK((*batch2)->stats().objects_new == 0);
  CHECK((*batch2)->stats().objects_dedup == 1);
}

TEST_CASE("compressible content is compressed, random content is stored raw") {
  TempDir dir;
  auto store = MakeStore(dir);
  auto batch = store->NewBatch();
  auto text = (*batch)->PutBlob(std::string(500000, 'x'));
  auto noise = (*batch)->PutBlob(dimtest::RandomBytes(500000, 1));
  REQUIRE((*batch)->Commit().ok());
  struct stat st;
  REQUIRE(::stat(store->PathOf(*text).c_str(), &st) == 0);
  CHECK(st.st_size < 10000);
  REQUIRE(::stat(store->PathOf(*noise).c_str(), &st) == 0);
  CHECK(st.st_size == 500000 + 16);  // header + raw body
}

TEST_CASE("an uncommitted batch leaves nothing behind") {
  TempDir dir;
  auto store = MakeStore(dir);
  Digest id;
  {
    auto batch = store->NewBatch();
    id = *(*batch)->PutBlob("never committed");
  }
  CHECK_FALSE(store->Has(id));
  int entries = 0;
  REQUIRE(store->ForEach([&](const Digest&, uint64_t) {
    entries++;
    return dim::Status::Ok();
  }).ok());
  CHECK(entries == 0);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    CHECK_MESSAGE(!e.is_regular_file(), "left behind: " << e.path());
  }
}

TEST_CASE("large files are chunked and readable at any offset") {
  TempDir dir;
  auto store = MakeStore(dir);
  std::string data = dimtest::RandomBytes(9 << 20, 7);
  dimtest::WriteFile(dir / "big", data);
  Digest id = PutFileAt(*store, dir / "big");
  auto list = store->ReadChunkList(id);
  REQUIRE(list.ok());
  CHECK(list->chunks.size() >= 4);
  CHECK(list->size == data.size());
  for (const auto& c : list->chunks) {
    CHECK(c.length <= (2u << 20));
    CHECK_FALSE(c.hole);
  }
  CHECK(ReadWhole(*store, id, data.size()) == data);
  for (uint64_t off : {0ull, 1ull, 131071ull, 4194303ull, 9437180ull}) {
    char buf[100];
    auto n = store->ReadAt(id, off, sizeof buf, buf);
    REQUIRE(n.ok());
    size_t expect = std::min<uint64_t>(sizeof buf, data.size() - off);
    CHECK(*n == expect);
    CHECK(std::string(buf, *n) == data.substr(off, expect));
  }
}

TEST_CASE("content-defined chunking resynchronizes after an insertion") {
  std::string data = dimtest::RandomBytes(8 << 20, 3);
  std::string edited = data.substr(0, 1000) + "INSERTED" + data.substr(1000);
  auto cuts = [](const std::string& d) {
    std::vector<size_t> out;
    size_t pos = 0;
    while (pos < d.size()) {
      pos += dim::NextChunkLength(reinterpret_cast<const uint8_t*>(d.data()) + pos, d.size() - pos);
      out.push_back(pos);
    }
    return out;
  };
  auto a = cuts(data), b = cuts(edited);
  // After the first chunk, boundaries realign shifted by the 8 inserted bytes.
  size_t shared = 0;
  for (size_t x : a) {
    if (std::find(b.begin(), b.end(), x + 8) != b.end()) shared++;
  }
  CHECK(shared + 2 >= a.size());
}

TEST_CASE("holes are preserved, not stored") {
  TempDir dir;
  auto store = MakeStore(dir);
  std::string path = dir / "sparse";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  REQUIRE(fd >= 0);
  std::string block(4096, 'd');
  REQUIRE(::pwrite(fd, block.data(), block.size(), 1 << 20) == 4096);
  REQUIRE(::ftruncate(fd, 64 << 20) == 0);
  ::close(fd);
  Digest id = PutFileAt(*store, path);
  auto list = store->ReadChunkList(id);
  REQUIRE(list.ok());
  uint64_t data_bytes = 0, hole_bytes = 0;
  for (const auto& c : list->chunks) (c.hole ? hole_bytes : data_bytes) += c.length;
  CHECK(list->size == (64u << 20));
  CHECK(data_bytes <= (1u << 20));  // one block, maybe rounded by the filesystem
  CHECK(hole_bytes >= (63u << 20));
  char buf[8];
  REQUIRE(store->ReadAt(id, 1 << 20, 8, buf).ok());
  CHECK(std::string(buf, 8) == "dddddddd");
  REQUIRE(store->ReadAt(id, 5, 8, buf).ok());
  CHECK(std::string(buf, 8) == std::string(8, '\0'));
}

TEST_CASE("a flipped byte is detected and names the object and the file") {
  TempDir dir;
  auto store = MakeStore(dir);
  auto batch = store->NewBatch();
  Digest id = *(*batch)->PutBlob(dimtest::RandomBytes(5000, 9));
  REQUIRE((*batch)->Commit().ok());
  std::string path = store->PathOf(id);
  int fd = ::open(path.c_str(), O_RDWR);
  char c;
  REQUIRE(::pread(fd, &c, 1, 100) == 1);
  c ^= 0x01;
  REQUIRE(::pwrite(fd, &c, 1, 100) == 1);
  ::close(fd);
  auto r = store->ReadBlob(id, "/usr/bin/ls");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == dim::Code::kCorruption);
  CHECK(r.status().message().find(id.Hex()) != std::string::npos);
  CHECK(r.status().message().find("/usr/bin/ls") != std::string::npos);
  CHECK_FALSE(store->Verify(id).ok());
}

TEST_CASE("a missing object is reported as such") {
  TempDir dir;
  auto store = MakeStore(dir);
  auto r = store->ReadBlob(dim::Sha256Of("absent"), "/etc/hosts");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == dim::Code::kNotFound);
  CHECK(r.status().message().find("/etc/hosts") != std::string::npos);
}

TEST_CASE("ENOSPC while staging fails the put and publishes nothing") {
  TempDir dir;
  dim::FaultEnv fault(dim::Env::Posix());
  auto store = MakeStore(dir, &fault);
  auto batch = store->NewBatch();
  REQUIRE((*batch)->PutBlob("first").ok());
  fault.FailAppendsAfter(1, ENOSPC);
  auto r = (*batch)->PutBlob("second");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == dim::Code::kNoSpace);
  batch->reset();
  CHECK_FALSE(store->Has(dim::Sha256Of("first")));
  CHECK_FALSE(store->Has(dim::Sha256Of("second")));
}

TEST_CASE("a crash while publishing leaves only whole objects") {
  TempDir dir;
  dim::FaultEnv fault(dim::Env::Posix());
  auto store = MakeStore(dir, &fault);
  auto batch = store->NewBatch();
  std::vector<Digest> ids;
  for (int i = 0; i < 10; i++) ids.push_back(*(*batch)->PutBlob("object " + std::to_string(i)));
  fault.CrashAfterRenames(5);
  CHECK_FALSE((*batch)->Commit().ok());
  int published = 0;
  for (const auto& id : ids) {
    if (!store->Has(id)) continue;
    published++;
    CHECK(store->Verify(id).ok());
  }
  CHECK(published == 4);
}

namespace {

uint64_t DiskSize(const ObjectStore& store, const Digest& id) {
  struct stat st;
  REQUIRE(::stat(store.PathOf(id).c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}

// A compress-later batch of a text blob, a random blob and a tiny blob.
struct LaterBatch {
  Digest text, noise, tiny;
  std::string text_body = std::string(200000, 'y') + "end";
  std::string noise_body = dimtest::RandomBytes(200000, 7);
};

LaterBatch PutLater(ObjectStore& store) {
  LaterBatch b;
  auto batch = store.NewBatch(/*compress_later=*/true);
  REQUIRE(batch.ok());
  b.text = *(*batch)->PutBlob(b.text_body);
  b.noise = *(*batch)->PutBlob(b.noise_body);
  b.tiny = *(*batch)->PutBlob("tiny");
  CHECK((*batch)->stats().objects_queued == 2);  // the tiny one is never compressed
  REQUIRE((*batch)->Commit().ok());
  return b;
}

}  // namespace

TEST_CASE("a compress-later batch stores objects raw and queues them; Compact compresses them") {
  TempDir dir;
  auto store = MakeStore(dir);
  LaterBatch b = PutLater(*store);
  CHECK(DiskSize(*store, b.text) == b.text_body.size() + 16);  // raw until compacted
  CHECK(*store->ReadBlob(b.text) == b.text_body);
  CHECK(*store->QueuedForCompression() == 2);

  auto st = store->Compact({});
  REQUIRE(st.ok());
  CHECK(st->examined == 2);
  CHECK(st->compressed == 1);  // random bytes do not pay
  CHECK(st->bytes_before == b.text_body.size() + 16);
  CHECK(st->bytes_after == DiskSize(*store, b.text));
  CHECK(DiskSize(*store, b.text) < 1000);
  CHECK(DiskSize(*store, b.noise) == b.noise_body.size() + 16);
  CHECK(*store->ReadBlob(b.text) == b.text_body);
  CHECK(*store->ReadBlob(b.noise) == b.noise_body);
  CHECK(*store->QueuedForCompression() == 0);

  auto again = store->Compact({});
  REQUIRE(again.ok());
  CHECK(again->examined == 0);
}

TEST_CASE("Compact with all examines every object, compressing what is raw") {
  TempDir dir;
  auto store = MakeStore(dir);
  LaterBatch b = PutLater(*store);
  // Lose the queue (a crash between publishing objects and queue): objects stay valid.
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/compact")) {
    std::filesystem::remove(e.path());
  }
  CHECK(store->Compact({})->examined == 0);
  dim::CompactOptions all;
  all.all = true;
  auto st = store->Compact(all);
  REQUIRE(st.ok());
  CHECK(st->examined == 3);
  CHECK(st->compressed == 1);
  CHECK(DiskSize(*store, b.text) < 1000);
  CHECK(*store->ReadBlob(b.tiny) == "tiny");
}

TEST_CASE("a crash while compacting leaves every object readable, and the queue for next time") {
  TempDir dir;
  dim::FaultEnv fault(dim::Env::Posix());
  auto store = MakeStore(dir, &fault);
  std::vector<std::pair<Digest, std::string>> objects;
  {
    auto batch = store->NewBatch(true);
    for (int i = 0; i < 10; i++) {
      std::string body(5000 + i, static_cast<char>('a' + i));
      objects.emplace_back(*(*batch)->PutBlob(body), body);
    }
    REQUIRE((*batch)->Commit().ok());
  }
  fault.CrashAfterRenames(5);
  CHECK_FALSE(store->Compact({}).ok());
  int compressed = 0;
  for (const auto& [id, body] : objects) {
    CHECK(*store->ReadBlob(id) == body);  // old or new encoding, never a torn one
    if (DiskSize(*store, id) < body.size()) compressed++;
  }
  CHECK(compressed == 4);
  CHECK(*store->QueuedForCompression() == 10);
  // After the "reboot": the queue is still there and the rest gets done.
  auto fresh = ObjectStore::Open(dim::Env::Posix(), dir.path());
  REQUIRE(fresh.ok());
  auto st = (*fresh)->Compact({});
  REQUIRE(st.ok());
  CHECK(st->compressed == 6);
  for (const auto& [id, body] : objects) {
    CHECK(DiskSize(**fresh, id) < body.size());
    CHECK(*(*fresh)->ReadBlob(id) == body);
  }
  CHECK(*(*fresh)->QueuedForCompression() == 0);
}

TEST_CASE("Compact leaves a damaged object alone and counts it; a collected one is skipped") {
  TempDir dir;
  auto store = MakeStore(dir);
  LaterBatch b = PutLater(*store);
  std::string good(100000, 'g');
  Digest other;
  {
    auto batch = store->NewBatch(true);
    other = *(*batch)->PutBlob(good);
    REQUIRE((*batch)->Commit().ok());
  }
  {
    int fd = ::open(store->PathOf(b.text).c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, "Z", 1, 1000) == 1);
    ::close(fd);
  }
  REQUIRE(store->Remove(b.noise).ok());
  auto st = store->Compact({});
  REQUIRE(st.ok());
  CHECK(st->damaged == 1);
  CHECK(st->compressed == 1);
  CHECK(DiskSize(*store, b.text) == b.text_body.size() + 16);  // untouched: fsck names it
  CHECK_FALSE(store->Has(b.noise));                            // not resurrected
  CHECK(*store->ReadBlob(other) == good);
}

TEST_CASE("an object received uncompressed is compressed by the receiving store") {
  TempDir src_dir, dst_dir;
  auto src = MakeStore(src_dir);
  auto dst = MakeStore(dst_dir);
  LaterBatch b = PutLater(*src);
  auto raw = src->ReadRaw(b.text);
  REQUIRE(raw.ok());
  auto batch = dst->NewBatch();
  auto decoded = (*batch)->PutRaw(b.text, *raw);
  REQUIRE(decoded.ok());
  CHECK(decoded->body == b.text_body);
  REQUIRE((*batch)->Commit().ok());
  CHECK(DiskSize(*dst, b.text) < 1000);
  CHECK(*dst->ReadBlob(b.text) == b.text_body);
}

TEST_CASE("CleanStaging removes what a dead writer staged, and nothing of a live one") {
  TempDir dir;
  auto store = MakeStore(dir);
  std::string rest(62, 'a');
  auto stage = [&](const std::string& tag) {
    REQUIRE(::mkdir((dir.path() + "/staging/" + tag).c_str(), 0700) == 0);
    dimtest::WriteFile(dir.path() + "/staging/" + tag + "/queue", std::string(32, 'q'));
    std::string staged = dir.path() + "/objects/ab/." + tag + "." + rest;
    dimtest::WriteFile(staged, "staged");
    return staged;
  };
  // No process has pid 2^22 + 1 (the kernel's pid_max is at most 2^22).
  std::string dead = stage("4194305-00112233deadbeef");
  std::string live = stage(std::to_string(::getppid()) + "-0011223344556677");
  REQUIRE(store->CleanStaging().ok());
  CHECK_FALSE(std::filesystem::exists(dead));
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/staging/4194305-00112233deadbeef"));
  CHECK(std::filesystem::exists(live));
  CHECK(std::filesystem::exists(dir.path() + "/staging/" + std::to_string(::getppid()) + "-0011223344556677"));
}

TEST_CASE("a batch larger than the early-flush threshold flushes while staging and commits whole") {
  TempDir dir;
  auto store = MakeStore(dir);
  auto batch = store->NewBatch(/*compress_later=*/true);
  std::vector<std::pair<Digest, std::string>> blobs;
  for (int i = 0; i < 3; i++) {  // 3 x 48 MiB: past 128 MiB, so a background syncfs runs
    std::string body = dimtest::RandomBytes(48 << 20, 100 + i);
    blobs.emplace_back(*(*batch)->PutBlob(body), std::move(body));
  }
  CHECK_FALSE(store->Has(blobs[0].first));  // flushed is not published
  REQUIRE((*batch)->Commit().ok());
  for (const auto& [id, body] : blobs) CHECK(*store->ReadBlob(id) == body);
}

TEST_CASE("ParallelFor visits every index once, and stops handing out work at the first error") {
  std::vector<std::atomic<int>> seen(1000);
  REQUIRE(dim::ParallelFor(seen.size(), 3, [&](size_t i) {
    seen[i]++;
    return dim::Status::Ok();
  }).ok());
  for (const auto& v : seen) CHECK(v.load() == 1);

  std::atomic<size_t> calls{0};
  auto s = dim::ParallelFor(100000, 2, [&](size_t i) {
    calls++;
    return i == 10 ? dim::Status::IOError("item 10") : dim::Status::Ok();
  });
  CHECK(s.code() == dim::Code::kIOError);
  CHECK(s.message().find("item 10") != std::string::npos);
  CHECK(calls.load() < 100000);
  CHECK(dim::ParallelFor(0, 4, [](size_t) { return dim::Status::IOError("never"); }).ok());
}

TEST_CASE("chunk list parser rejects damaged input") {
  dim::ChunkList l;
  l.size = 10;
  l.chunks.push_back({10, false, dim::Sha256Of("x")});
  std::string body = l.Serialize();
  CHECK(dim::ChunkList::Parse(body).ok());
  CHECK_FALSE(dim::ChunkList::Parse(body.substr(0, body.size() - 1)).ok());
  std::string wrong_size = body;
  wrong_size[8] = 11;
  CHECK_FALSE(dim::ChunkList::Parse(wrong_size).ok());
  std::string zero_len = body;
  std::memset(zero_len.data() + 24, 0, 8);
  CHECK_FALSE(dim::ChunkList::Parse(zero_len).ok());
}

namespace {
uid_t OwnerOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_uid;
}
}  // namespace

TEST_CASE("root hands what it creates in a store of another user's to that user") {
  if (::geteuid() != 0) return;  // only root can create another user's files
  TempDir dir;
  const std::string store = dir / "store";
  REQUIRE(::mkdir(store.c_str(), 0700) == 0);
  REQUIRE(::chown(store.c_str(), 65534, 65534) == 0);
  REQUIRE(dim::Store::Init(dim::Env::Posix(), store).ok());
  auto opened = dim::Store::Open(dim::Env::Posix(), store);
  REQUIRE(opened.ok());
  auto& s = **opened;
  auto lock = s.LockStore(false, false);
  REQUIRE(lock.ok());
  auto batch = s.objects().NewBatch();
  REQUIRE(batch.ok());
  auto id = (*batch)->PutBlob("owned by the store's owner");
  REQUIRE(id.ok());
  REQUIRE((*batch)->Commit().ok());
  for (const std::string& p : {store + "/catalog.db", store + "/objects", store + "/staging",
                               store + "/locks/store.lock", s.objects().PathOf(*id)}) {
    CHECK_MESSAGE(OwnerOf(p) == 65534, p);
  }
  REQUIRE(dim::WriteFileAtomic(dim::Env::Posix(), store + "/published", "1\n").ok());
  CHECK(OwnerOf(store + "/published") == 65534);
  REQUIRE(s.env()->MkdirAll(store + "/a/b", 0700).ok());
  CHECK(OwnerOf(store + "/a") == 65534);
  CHECK(OwnerOf(store + "/a/b") == 65534);
  // A store of root's stays root's.
  REQUIRE(dim::WriteFileAtomic(dim::Env::Posix(), dir / "root-file", "x").ok());
  CHECK(OwnerOf(dir / "root-file") == 0);
}

TEST_CASE("tightening and handing over a store never follow a symlink its owner planted") {
  if (::geteuid() != 0) return;
  TempDir dir;
  const std::string store = dir / "store", outside = dir / "outside";
  REQUIRE(::mkdir(store.c_str(), 0700) == 0);
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  dimtest::WriteFile(outside + "/system-file", "x", 0644);
  REQUIRE(dim::Store::Init(dim::Env::Posix(), store).ok());
  // The owner (another user, say a compromised imaged) opens the store up
  // and points names in it at files of root's.
  REQUIRE(::chmod(store.c_str(), 0755) == 0);
  REQUIRE(::symlink(outside.c_str(), (store + "/dir-link").c_str()) == 0);
  REQUIRE(::symlink((outside + "/system-file").c_str(), (store + "/file-link").c_str()) == 0);
  auto tightened = dim::Store::TightenPermissions(store);
  REQUIRE(tightened.ok());
  CHECK(*tightened);
  struct stat st {};
  REQUIRE(::stat((outside + "/system-file").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  REQUIRE(::stat(outside.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(dim::ChownTree(store, 65534, 65534).ok());
  CHECK(OwnerOf(store + "/file-link") == 65534);
  CHECK(OwnerOf(outside + "/system-file") == 0);
  CHECK(OwnerOf(outside) == 0);
  CHECK(OwnerOf(store + "/catalog.db") == 65534);
}
