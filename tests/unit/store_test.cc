// Object store: round trips, chunking, holes, verification and fault injection.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include "dim/object_store.h"
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
