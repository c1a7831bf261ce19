// Storage for packed weights: vectors of floats that start on a cache line, so that the kernels'
// full-width loads of them never straddle two lines (malloc aligns large blocks to 16 bytes).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace onnxpred {

template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};

  CacheLineAllocator() = default;
  template <typename U>
  explicit CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t count) { return static_cast<T*>(::operator new(count * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlignment); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
  friend bool operator!=(const CacheLineAllocator&, const CacheLineAllocator&) { return false; }
};

using PackedFloats = std::vector<float, CacheLineAllocator<float>>;

}  // namespace onnxpred
