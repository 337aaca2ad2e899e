#include "dim/status.h"

#include <cerrno>
#include <cstring>

namespace dim {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not found";
    case Code::kCorruption: return "corruption";
    case Code::kIOError: return "I/O error";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kAlreadyExists: return "already exists";
    case Code::kBusy: return "busy";
    case Code::kNoSpace: return "no space left";
    case Code::kUnsupported: return "unsupported";
    case Code::kConflict: return "conflict";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return msg_;
}

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + msg_).WithErrno(errno_);
}

namespace {

// The errnos a file system call or a server refusal may carry.
constexpr struct {
  int err;
  const char* name;
} kErrnoNames[] = {
    {EPERM, "EPERM"},   {ENOENT, "ENOENT"},       {EIO, "EIO"},         {E2BIG, "E2BIG"},
    {EBADF, "EBADF"},   {EAGAIN, "EAGAIN"},       {ENOMEM, "ENOMEM"},   {EACCES, "EACCES"},
    {EBUSY, "EBUSY"},   {EEXIST, "EEXIST"},       {EXDEV, "EXDEV"},     {ENOTDIR, "ENOTDIR"},
    {EISDIR, "EISDIR"}, {EINVAL, "EINVAL"},       {EFBIG, "EFBIG"},     {ENOSPC, "ENOSPC"},
    {EROFS, "EROFS"},   {EMLINK, "EMLINK"},       {ERANGE, "ERANGE"},   {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOTEMPTY, "ENOTEMPTY"}, {ELOOP, "ELOOP"},   {ENODATA, "ENODATA"}, {EOPNOTSUPP, "EOPNOTSUPP"},
    {EDQUOT, "EDQUOT"}, {ESTALE, "ESTALE"},       {ENOSYS, "ENOSYS"},   {ETIMEDOUT, "ETIMEDOUT"},
};

}  // namespace

const char* ErrnoName(int err) {
  for (const auto& e : kErrnoNames) {
    if (e.err == err) return e.name;
  }
  return "";
}

int ErrnoFromName(const std::string& name) {
  for (const auto& e : kErrnoNames) {
    if (name == e.name) return e.err;
  }
  return 0;
}

int ToErrno(const Status& s) {
  if (s.posix_errno() != 0) return s.posix_errno();
  switch (s.code()) {
    case Code::kOk: return 0;
    case Code::kNotFound: return ENOENT;
    case Code::kPermissionDenied: return EACCES;
    case Code::kAlreadyExists: return EEXIST;
    case Code::kNoSpace: return ENOSPC;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kUnsupported: return EOPNOTSUPP;
    case Code::kBusy: return EBUSY;
    default: return EIO;
  }
}

namespace {

Status ErrnoCode(int err, const std::string& msg) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Status::NotFound(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return Status::PermissionDenied(msg);
    case EEXIST:
    case ENOTEMPTY:
      return Status::AlreadyExists(msg);
    case ENOSPC:
    case EDQUOT:
      return Status::NoSpace(msg + " (free space on that filesystem, then retry)");
    case EINVAL:
    case ENAMETOOLONG:
      return Status::InvalidArgument(msg);
    case EBUSY:
    case EWOULDBLOCK:
      return Status::Busy(msg);
    case EOPNOTSUPP:
      return Status::Unsupported(msg);
    default:
      return Status::IOError(msg);
  }
}

}  // namespace

Status ErrnoStatus(int err, const std::string& what) {
  return ErrnoCode(err, what + ": " + std::strerror(err)).WithErrno(err);
}

Status PosixError(const std::string& what) { return ErrnoStatus(errno, what); }

}  // namespace dim
