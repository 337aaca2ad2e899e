// dim's one error type: a Status with a small set of codes and a message meant
// for a person (what, where, what to do next), and Result<T> for values that may
// fail. Errors never cross a C callback as exceptions; they travel as values.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dim {

enum class Code {
  kOk = 0,
  kNotFound,
  kCorruption,
  kIOError,
  kInvalidArgument,
  kPermissionDenied,
  kAlreadyExists,
  kBusy,          // someone else holds the lock (e.g. a concurrent commit)
  kNoSpace,       // ENOSPC / EDQUOT: the filesystem is full
  kUnsupported,   // e.g. a catalogue written by a newer dim
  kConflict,      // optimistic concurrency lost (the image moved on)
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string msg) : code_(code), msg_(std::move(msg)) {}

  static Status Ok() { return {}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status NoSpace(std::string m) { return {Code::kNoSpace, std::move(m)}; }
  static Status Unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }
  static Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  // The POSIX errno this error stands for, when it came from one (a syscall,
  // or a server's refusal that names one); 0 when only the code is known.
  // rootfs-fuse answers it exactly instead of guessing from the code.
  int posix_errno() const { return errno_; }
  Status WithErrno(int err) const {
    Status s = *this;
    s.errno_ = err;
    return s;
  }
  const std::string& message() const { return msg_; }
  // "corruption: object ab12… (for /usr/bin/ls) fails its hash check"
  std::string ToString() const;
  // Prefixes context: Status("open x").Annotate("importing /srv") -> "importing /srv: open x".
  Status Annotate(const std::string& context) const;

 private:
  Code code_ = Code::kOk;
  int errno_ = 0;
  std::string msg_;
};

const char* CodeName(Code code);

// The symbolic name of a POSIX errno ("ENOSPC"), and back (0 for a name this
// table lacks). Servers name the errno of a refusal in their JSON errors by
// name, which does not depend on the architecture.
const char* ErrnoName(int err);
int ErrnoFromName(const std::string& name);
// The errno a status stands for: its own, else the nearest for its code.
int ToErrno(const Status& s);

// Turns errno from a failed syscall into a Status naming the operation and the file.
// "open /srv/master/etc/shadow: Permission denied"
Status ErrnoStatus(int err, const std::string& what);
// Same, with errno read at the call.
Status PosixError(const std::string& what);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace dim

#define DIM_CONCAT_INNER(a, b) a##b
#define DIM_CONCAT(a, b) DIM_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when expr fails.
#define DIM_RETURN_IF_ERROR(expr) DIM_RETURN_IF_ERROR_IMPL(DIM_CONCAT(dim_status_, __COUNTER__), expr)
#define DIM_RETURN_IF_ERROR_IMPL(tmp, expr) \
  do {                                      \
    ::dim::Status tmp = (expr);             \
    if (!tmp.ok()) return tmp;              \
  } while (0)

// DIM_ASSIGN_OR_RETURN(auto x, Foo()); binds the value or returns the error.
#define DIM_ASSIGN_OR_RETURN(lhs, expr) \
  DIM_ASSIGN_OR_RETURN_IMPL(DIM_CONCAT(dim_result_, __LINE__), lhs, expr)
#define DIM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
