#include "dim/random.h"

#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>

namespace dim {

void RandomBytesNoWait(void* out, size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  size_t got = 0;
#ifdef GRND_INSECURE
  const unsigned kFlags[] = {GRND_INSECURE, GRND_NONBLOCK};
#else
  const unsigned kFlags[] = {GRND_NONBLOCK};
#endif
  for (unsigned flags : kFlags) {
    while (got < n) {
      ssize_t r = ::getrandom(p + got, n - got, flags);
      if (r > 0) got += static_cast<size_t>(r);
      else if (r < 0 && errno == EINTR) continue;
      else break;
    }
  }
  // Neither answered (old kernel, pool not ready): distinct per process,
  // thread and moment, which is all the callers' uniqueness needs.
  uint64_t x = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
               (static_cast<uint64_t>(::getpid()) << 32) ^ (static_cast<uint64_t>(::syscall(SYS_gettid)) << 48);
  for (; got < n; got++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    p[got] = static_cast<unsigned char>(x >> 56);
  }
}

}  // namespace dim
