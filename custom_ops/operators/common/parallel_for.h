// Runs the tasks of an op on onnxruntime's intra-op thread pool.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "onnxruntime_cxx_api.h"

namespace onnxpred {

// At most this many batches per ParallelFor: enough to balance two to a few dozen threads, few
// enough that waking threads (no spinning) does not cost more than the work of a small layer.
inline constexpr size_t kMaxParallelBatches = 64;

template <typename Fn>
void ParallelFor(const Ort::KernelContext& context, int64_t total, Fn&& fn) {
  if (total <= 0) return;
  context.ParallelFor([](void* data, size_t i) { (*static_cast<Fn*>(data))(static_cast<int64_t>(i)); },
                      static_cast<size_t>(total), std::min(static_cast<size_t>(total), kMaxParallelBatches), &fn);
}


}  // namespace onnxpred
