// JSON for dim's messages and command output, over nlohmann-json (header
// only, so the static node binary needs no library): Dump writes compact
// JSON with fields in insertion order (bytes that are not UTF-8 become
// U+FFFD), Parse reads a document, and Fields reads an object's fields with
// one clear error for the first missing or mistyped one.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "dim/status.h"

namespace dim::json {

using Json = nlohmann::ordered_json;

inline std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// what: the document, for the error ("head answer").
inline Result<Json> Parse(std::string_view text, const std::string& what) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    std::string why = e.what();
    if (size_t p = why.find("] "); why.starts_with("[json.") && p != std::string::npos) why.erase(0, p + 2);
    return Status::InvalidArgument(what + " is not valid JSON: " + why);
  }
}

enum Need { kRequired, kOptional };

// Bytes in a JSON string (RFC 4648 base64, padded): JSON strings hold
// UTF-8, not arbitrary bytes.
inline std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

// The bytes of Base64's text; nullopt for anything else (other characters,
// a length that is not a multiple of 4, padding inside, non-zero bits that
// padding drops), so each byte string has exactly one accepted text.
inline std::optional<std::string> FromBase64(std::string_view text) {
  auto value = [](char ch) -> int {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const size_t pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    if (pad == 1 && text[i + 2] == '=') return std::nullopt;  // "x=y=" style
    uint32_t n = 0;
    for (size_t k = 0; k < 4 - pad; k++) {
      int v = value(text[i + k]);
      if (v < 0) return std::nullopt;
      n |= static_cast<uint32_t>(v) << (18 - 6 * k);
    }
    if ((pad == 1 && (n & 0xff) != 0) || (pad == 2 && (n & 0xffff) != 0)) return std::nullopt;
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

// Reads the fields of one object. A missing optional field reads as empty,
// 0 or false. The first error is kept (status()), naming the document and
// the field's path ("status answer: field children[1].images.base.head: …");
// later reads after an error return empty values.
class Fields {
 public:
  Fields(const Json& j, std::string what) : j_(j), what_(std::move(what)), sink_(&status_) {
    if (!j_.is_object()) Fail("", "expected a JSON object, found " + std::string(j_.type_name()));
  }
  Fields(const Fields&) = delete;
  Fields& operator=(const Fields&) = delete;

  const Status& status() const { return *sink_; }
  bool Has(const char* key) const { return j_.is_object() && j_.contains(key); }

  std::string Str(const char* key, Need need = kRequired) {
    const Json* v = Get(key, need);
    if (v == nullptr) return {};
    if (!v->is_string()) return Wrong(key, "a string", *v), std::string();
    return v->get<std::string>();
  }
  // Bytes carried as Base64 text, at most max_bytes of them.
  std::string Bytes(const char* key, size_t max_bytes, Need need = kRequired) {
    const Json* v = Get(key, need);
    if (v == nullptr) return {};
    if (!v->is_string()) return Wrong(key, "a base64 string", *v), std::string();
    const auto& text = v->get_ref<const std::string&>();
    if (text.size() / 4 * 3 > max_bytes + 2) return Fail(key, "longer than " + std::to_string(max_bytes) + " bytes"), std::string();
    auto bytes = FromBase64(text);
    if (!bytes) return Fail(key, "is not base64 (RFC 4648, padded)"), std::string();
    if (bytes->size() > max_bytes) return Fail(key, "longer than " + std::to_string(max_bytes) + " bytes"), std::string();
    return std::move(*bytes);
  }
  // Integers in messages are versions, epochs, counts and ages: never negative.
  int64_t Int(const char* key, Need need = kRequired) {
    const Json* v = Get(key, need);
    return v == nullptr ? 0 : AsInt(*v, key);
  }
  double Double(const char* key, Need need = kRequired) {
    const Json* v = Get(key, need);
    if (v == nullptr) return 0;
    if (!v->is_number()) return Wrong(key, "a number", *v), 0;
    // 1e999 parses as infinity, which JSON cannot carry back.
    if (!std::isfinite(v->get<double>())) return Fail(key, "out of range"), 0;
    return v->get<double>();
  }
  bool Bool(const char* key, Need need = kRequired) {
    const Json* v = Get(key, need);
    if (v == nullptr) return false;
    if (!v->is_boolean()) return Wrong(key, "true or false", *v), false;
    return v->get<bool>();
  }
  // This value itself as an integer (an array element, an object entry).
  int64_t SelfInt() { return AsInt(j_, ""); }
  // This value itself as a string.
  std::string SelfStr() {
    if (!j_.is_string()) return Wrong("", "a string", j_), std::string();
    return j_.get<std::string>();
  }
  // Refuses the document at this value, saying why.
  void Refuse(const std::string& why) { Fail("", why); }

  // fn(element) for each element of the array `key`.
  void Each(const char* key, Need need, const std::function<void(Fields&)>& fn) {
    const Json* v = Get(key, need);
    if (v == nullptr) return;
    if (!v->is_array()) return Wrong(key, "an array", *v);
    for (size_t i = 0; i < v->size() && sink_->ok(); i++) {
      Fields e(this, (*v)[i], Path(key) + "[" + std::to_string(i) + "]", false);
      fn(e);
    }
  }
  void Each(const char* key, const std::function<void(Fields&)>& fn) { Each(key, kRequired, fn); }
  // fn(name, value) for each entry of the object `key`; each value an object.
  void Entries(const char* key, Need need, const std::function<void(const std::string&, Fields&)>& fn,
               bool values_are_objects = true) {
    const Json* v = Get(key, need);
    if (v == nullptr) return;
    if (!v->is_object()) return Wrong(key, "an object", *v);
    for (auto it = v->begin(); it != v->end() && sink_->ok(); ++it) {
      Fields e(this, it.value(), Path(key) + "." + it.key(), values_are_objects);
      fn(it.key(), e);
    }
  }

 private:
  Fields(Fields* parent, const Json& j, std::string path, bool object)
      : j_(j), what_(parent->what_), path_(std::move(path)), sink_(parent->sink_) {
    if (object && !j_.is_object()) Fail("", "expected a JSON object, found " + std::string(j_.type_name()));
  }
  std::string Path(const char* key) const {
    if (*key == '\0') return path_;
    return path_.empty() ? std::string(key) : path_ + "." + key;
  }
  void Fail(const char* key, const std::string& why) {
    if (!sink_->ok()) return;
    std::string field = Path(key);
    *sink_ = Status::InvalidArgument(what_ + (field.empty() ? "" : ": field " + field) + ": " + why);
  }
  void Wrong(const char* key, const char* want, const Json& v) {
    Fail(key, std::string("expected ") + want + ", found " + (v.is_number() ? "a number" : v.type_name()));
  }
  const Json* Get(const char* key, Need need) {
    if (!sink_->ok() || !j_.is_object()) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end() || (need == kOptional && it->is_null())) {
      if (need == kRequired) Fail(key, "missing");
      return nullptr;
    }
    return &*it;
  }
  int64_t AsInt(const Json& v, const char* key) {
    if (!sink_->ok()) return 0;
    if (!v.is_number_integer()) return Wrong(key, "an integer", v), 0;
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Fail(key, "too large"), 0;
      }
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.get<int64_t>() < 0) return Fail(key, "must not be negative"), 0;
    return v.get<int64_t>();
  }

  const Json& j_;
  std::string what_, path_;
  Status status_;
  Status* sink_;  // the root's status_: one error for the whole document
};

}  // namespace dim::json
