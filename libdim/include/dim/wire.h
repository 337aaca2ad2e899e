// The little-endian, length-prefixed encoding shared by dim's binary wire
// formats (catalogue deltas, node overlay listings and operations):
// docs/protocol.md specifies it. Readers never trust lengths: every read is
// bounds-checked and reports failure instead of reading past the input.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dim/entry.h"

namespace dim::wire {

class Writer {
 public:
  void U8(uint8_t v) { s_.push_back(static_cast<char>(v)); }
  // Whole fields appended at once: byte-wise push_back made encoding cost
  // more than hashing in a version's root hash pass.
  void U32(uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; i++) b[i] = static_cast<char>(v >> (8 * i));
    s_.append(b, 4);
  }
  void I64(int64_t v) {
    char b[8];
    for (int i = 0; i < 8; i++) b[i] = static_cast<char>(static_cast<uint64_t>(v) >> (8 * i));
    s_.append(b, 8);
  }
  void Str(std::string_view v) {
    U32(static_cast<uint32_t>(v.size()));
    s_.append(v);
  }
  void Entry(const dim::Entry& e);
  std::string& out() { return s_; }

 private:
  std::string s_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v);
  bool U32(uint32_t* v);
  bool I64(int64_t* v);
  bool U64(uint64_t* v);
  bool Str(std::string* v);
  bool Raw(size_t n, std::string_view* v);
  // An entry as Writer::Entry wrote it; false on truncation or invalid fields.
  bool Entry(dim::Entry* e);
  size_t left() const { return in_.size(); }

 private:
  std::string_view in_;
};

// Nodes pinned to versions of an image (GET/PUT /v1/images/NAME/pins):
// "DIMPIN1\n", U32 count, then per node Str name and I64 version.
std::string EncodePins(const std::map<std::string, int64_t>& pins);
// False on a malformed body (names must ascend); names are checked by the caller.
bool DecodePins(std::string_view body, std::map<std::string, int64_t>* pins);

// Object batches (POST /v1/objects/batch): per object its 32-byte id, a
// little-endian U64 length and the object file's stored bytes; packs
// (?packed=1, after zstd): id, a U8 kind, U64 length and the decoded body.
struct ObjectRecord {
  Digest id;
  uint8_t kind = 0;       // packs only
  std::string_view body;  // points into the decoded input
};
// False on a truncated record; nothing is verified here (ids are checked
// against content by the caller).
bool DecodeObjectRecords(std::string_view body, bool packed, std::vector<ObjectRecord>* out);

// An absolute entry path without NUL bytes.
bool ValidPath(const std::string& p);

}  // namespace dim::wire
