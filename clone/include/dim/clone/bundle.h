// One image version as one byte stream, the payload of a file-mode clone:
// a header (the catalogue delta from nothing to the version, the keep-out
// list and path policies, as replication sends them), then every object the
// version names in the store's own encoding. Receivers apply it exactly as a
// replication step: objects verified and durable, then one transaction.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "dim/status.h"
#include "dim/store.h"

namespace dim::clone {

struct BundleHeader {
  std::string image;
  int64_t version = 0;
  std::string delta;    // CatalogDelta::Serialize, zstd-compressed
  std::string keepout;  // keepout::EncodeList
  std::string policy;   // policy::Encode
  uint64_t objects = 0;
};

constexpr uint64_t kMaxBundleHeader = 256ull << 20;
constexpr uint64_t kMaxBundleObject = 64ull << 20;

// The header as bytes on the wire (magic, then fields), and its one decoder.
std::string EncodeBundleHeader(const BundleHeader& h);
Result<BundleHeader> DecodeBundleHeader(std::string_view bytes);

// Appends the bundle of image@version to fd, calling grew(total bytes) after
// each write so a sender can stream what is written.
Status WriteBundle(Store& store, const std::string& image, int64_t version, int fd,
                   const std::function<void(uint64_t)>& grew);

// Applies a received bundle (the file open at fd) to a store: every object
// verified against its id and made durable, the delta checked (CheckDelta),
// then one transaction applies the rows, keep-out list and policies; a store
// already at or past the version is left alone. Returns "image@version".
Result<std::string> ApplyBundle(Store& store, int fd);

// Materializes a received bundle as a tree at dest (absent or empty): a
// private store beside dest takes the bundle, and Checkout renames the tree
// into place when it is whole; the private store is removed either way.
Result<std::string> ApplyBundleAsTree(int fd, const std::string& dest);

}  // namespace dim::clone
