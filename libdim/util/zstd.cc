#include "dim/zstd.h"

#include <zstd.h>

#include <algorithm>
#include <memory>

namespace dim {

Result<std::string> DecompressFrame(std::string_view frame, uint64_t max, const std::string& what) {
  auto too_large = [&](const std::string& size) {
    return Status::Corruption(what + " decompresses to " + size + " bytes, more than the " + std::to_string(max) +
                              " accepted; a broken or hostile server");
  };
  unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return Status::Corruption(what + " is not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > max) return too_large(std::to_string(declared));
  // One context per thread, reset for each frame: making one zeroes ~160 kB,
  // which cost more than decoding the small objects and deltas of a push.
  // It carries no state from one frame to the next (the reset below).
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return Status::IOError("zstd: out of memory for a decompression context");
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_and_parameters);
  // The window (the decoder's own buffer) stays at zstd's default bound of 128 MiB.
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
  // Memory follows what the frame really produces, not what it declares:
  // the buffer starts small and doubles.
  std::string out;
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN) out.resize(std::clamp<uint64_t>(declared, 1, 1 << 20));
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  size_t pos = 0, ret = 1;
  while (ret != 0) {
    if (pos == out.size()) {
      // Grow by doubling, to at most one byte past the limit: reaching it means too much.
      if (out.size() > max) return too_large("over " + std::to_string(max));
      out.resize(static_cast<size_t>(std::min<uint64_t>(max + 1, std::max<size_t>(out.size() * 2, 64 << 10))));
    }
    ZSTD_outBuffer ob{out.data(), out.size(), pos};
    size_t in_before = in.pos;
    ret = ZSTD_decompressStream(dctx.get(), &ob, &in);
    if (ZSTD_isError(ret)) return Status::Corruption(what + " does not decompress: " + ZSTD_getErrorName(ret));
    if (ob.pos > max) return too_large("over " + std::to_string(max));
    bool progress = ob.pos != pos || in.pos != in_before;
    pos = ob.pos;
    if (ret != 0 && !progress && in.pos == in.size) return Status::Corruption(what + " is cut short");
  }
  if (in.pos != in.size) return Status::Corruption(what + " has bytes after its zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && pos != declared) {
    return Status::Corruption(what + " declares " + std::to_string(declared) + " bytes but holds " + std::to_string(pos));
  }
  out.resize(pos);
  return out;
}

}  // namespace dim
