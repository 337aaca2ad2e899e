// Runs fn(i) for every i in [0, n) on up to `threads` threads (the caller's
// one among them). Indexes are handed out one at a time, so uneven items
// balance; the first error stops the hand-out and is returned once every
// thread has finished the item it holds.
#pragma once

#include <cstddef>
#include <functional>

#include "dim/status.h"

namespace dim {

Status ParallelFor(size_t n, int threads, const std::function<Status(size_t i)>& fn);

}  // namespace dim
