// Random bytes that never wait for the kernel's entropy pool: for names and
// salts that must be unpredictable to other parties but not secret keys.
// Early in a node's boot the pool is not initialised, and a blocking
// getrandom() then runs the kernel's jitter collection: over a second under
// emulation, all of it before the root is mounted.
#pragma once

#include <cstddef>

namespace dim {

// Fills OUT with N bytes: GRND_INSECURE (Linux 5.6), else GRND_NONBLOCK,
// else a generator seeded from the clock, pid and thread. Never blocks or
// fails. Keys and secrets use a blocking getrandom instead (auth.cc, sign.cc).
void RandomBytesNoWait(void* out, size_t n);

}  // namespace dim
