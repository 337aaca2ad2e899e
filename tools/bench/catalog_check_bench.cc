// What a version's integrity costs: builds the snapshot of an image version
// in a store, then times (best of N) the root hash over its rows, the check
// a node runs on that snapshot before using it, and SQLite's checks alone.
// Usage: dim-catalog-check-bench STORE IMAGE [RUNS]
#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "dim/delta.h"
#include "dim/root.h"
#include "dim/store.h"

namespace {

double Best(int runs, const std::function<void()>& fn) {
  double best = 1e9;
  for (int i = 0; i < runs; i++) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best * 1000;
}

[[noreturn]] void Die(const dim::Status& s) {
  std::fprintf(stderr, "dim-catalog-check-bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dim-catalog-check-bench STORE IMAGE [RUNS]\n");
    return 2;
  }
  int runs = argc > 3 ? std::atoi(argv[3]) : 5;
  auto store = dim::Store::Open(dim::Env::Posix(), argv[1], false);
  if (!store.ok()) Die(store.status());
  auto img = (*store)->catalog().GetImage(argv[2]);
  if (!img.ok()) Die(img.status());
  auto snap = dim::SnapshotCatalog((*store)->catalog(), *img, img->head);
  if (!snap.ok()) Die(snap.status());
  auto v = (*store)->catalog().GetVersion(*img, img->head);
  std::printf("image %s@%lld: %llu entries, snapshot %zu bytes\n", argv[2], static_cast<long long>(img->head),
              static_cast<unsigned long long>(v->entries), snap->size());
  double root = Best(runs, [&] {
    auto r = dim::ScanVersion((*store)->catalog(), img->id, img->head);
    if (!r.ok()) Die(r.status());
  });
  double check = Best(runs, [&] {
    auto r = dim::CheckSnapshot(*snap, argv[2], nullptr);
    if (!r.ok()) Die(r.status());
  });
  auto pragma = [&](const char* sql) {
    return Best(runs, [&] {
      auto db = dim::sql::Db::Open(":memory:");
      auto* copy = static_cast<unsigned char*>(sqlite3_malloc64(snap->size()));
      std::memcpy(copy, snap->data(), snap->size());
      copy[18] = copy[19] = 1;
      sqlite3_deserialize((*db)->raw(), "main", copy, snap->size(), snap->size(),
                          SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY);
      auto q = (*db)->Prepare(sql);
      while (q->Step()) {
      }
    });
  };
  std::printf("root hash pass (store rows): %.1f ms\nCheckSnapshot: %.1f ms\n", root, check);
  std::printf("of which SQLite alone: quick_check %.1f ms, integrity_check %.1f ms\n", pragma("PRAGMA quick_check"),
              pragma("PRAGMA integrity_check"));
  return 0;
}
