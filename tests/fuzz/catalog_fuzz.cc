// libFuzzer target for what a receiver takes from a parent server's catalogue:
// delta bodies (CatalogDelta::Parse, then CheckDelta and ApplyDelta against a
// replica holding a small version 1) and snapshots (CheckSnapshot, a SQLite
// file from the network). The first byte picks which. Nothing may crash; a
// delta that parses must serialize back to its input; one that passes the
// checks must apply, and leave a tree whose every entry has a directory parent.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "dim/delta.h"
#include "dim/root.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "catalog_fuzz: %s\n", what.c_str());
  std::abort();
}

dim::Entry Make(const std::string& path, dim::EntryType type) {
  dim::Entry e;
  e.path = path;
  e.type = type;
  e.mode = 0755;
  return e;
}

// One replica for the whole run: image "deb" at version 1 with /, /etc and
// /etc/hosts. Deltas are applied inside a transaction that is rolled back.
dim::Catalog& Replica() {
  static std::unique_ptr<dim::Catalog> c = [] {
    auto cat = dim::Catalog::Open(":memory:");
    if (!cat.ok()) Fail("cannot open an in-memory catalogue");
    auto img = (*cat)->CreateImage("deb", "");
    auto w = (*cat)->NewVersion(*img);
    dim::Entry hosts = Make("/etc/hosts", dim::EntryType::kFile);
    hosts.mode = 0644;
    for (const auto& e : {Make("/", dim::EntryType::kDir), Make("/etc", dim::EntryType::kDir), hosts}) {
      if (!(*w)->Put(e).ok()) Fail("cannot seed the replica");
    }
    if (!(*w)->Finish("v1", "fuzz", 1).ok()) Fail("cannot seed the replica");
    return std::move(*cat);
  }();
  return *c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 1) {
    (void)dim::CheckSnapshot(in, "deb", nullptr);
    return 0;
  }
  auto d = dim::CatalogDelta::Parse(in);
  if (!d.ok()) return 0;
  if (d->Serialize(in[8] == '2' ? 2 : 1) != in) Fail("a delta does not serialize back to its input");
  dim::Catalog& c = Replica();
  if (!dim::CheckDelta(c, *d).ok()) return 0;
  auto txn = dim::sql::Transaction::Begin(c.db());
  if (!txn.ok()) Fail("cannot begin a transaction");
  dim::Status applied = dim::ApplyDelta(c, *d);
  // A checked delta fails to apply only where the replica disagrees with it
  // (a start other than its head, an ended row it does not have).
  if (!applied.ok() && applied.code() != dim::Code::kConflict && applied.code() != dim::Code::kCorruption) {
    Fail("a checked delta failed to apply: " + applied.ToString());
  }
  if (applied.ok()) {
    auto img = c.GetImage(d->image);
    if (!img.ok()) Fail("the applied image is missing");
    // The root hash pass re-checks what CheckDelta admitted: it must agree.
    auto root = dim::ScanVersion(c, img->id, d->to);
    if (!root.ok()) Fail("a checked and applied delta fails the root hash pass: " + root.status().ToString());
    dim::Status walk = c.ForEachEntry(img->id, d->to, [&](const dim::Entry& e) -> dim::Status {
      if (e.path == "/") return dim::Status::Ok();
      auto parent = c.Lookup(img->id, d->to, std::string(dim::ParentPath(e.path)));
      if (!parent.ok() || !*parent || (*parent)->type != dim::EntryType::kDir) {
        Fail("an applied delta left " + e.path + " without a directory parent");
      }
      return dim::Status::Ok();
    });
    if (!walk.ok()) Fail("cannot walk the applied version: " + walk.ToString());
  }
  return 0;  // the transaction rolls back: the replica stays at version 1
}
