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
  return Status(code_, context + ": " + msg_);
}

Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
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

Status PosixError(const std::string& what) { return ErrnoStatus(errno, what); }

}  // namespace dim
