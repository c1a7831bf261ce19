#include "operators/conv/tile_kernels.h"

#include <algorithm>

#include "operators/common/isa.h"

namespace onnxpred {

BandRuleMasks::BandRuleMasks(const WindowPattern& pattern, int64_t width_, int64_t height)
    : window(pattern.size),
      width(width_),
      words(CeilDiv(width_, 64)),
      reach(std::min(pattern.size, width_) - 1),
      full_rows_(std::min(pattern.size, height)) {
  const int64_t k = pattern.size;
  auto set = [](std::vector<uint64_t>& bits, int64_t word0, int64_t c) { bits[static_cast<size_t>(word0 + c / 64)] |= uint64_t{1} << (c % 64); };
  sample_.assign(static_cast<size_t>(k * words), 0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t c = 0; c < width; ++c)
      if (pattern.is_sample[static_cast<size_t>(i * k + c % k)]) set(sample_, i * words, c);
  same_window_.assign(static_cast<size_t>((2 * reach + 1) * words), 0);
  for (int64_t d = -reach; d <= reach; ++d)
    for (int64_t c = 0; c < width; ++c)
      if (c + d >= 0 && c + d < width && (c + d) / k == c / k) set(same_window_, (d + reach) * words, c);
  auto empty_windows = [&](int64_t rows) {
    std::vector<uint64_t> bits(static_cast<size_t>(words), 0);
    for (int64_t c0 = 0; c0 < width; c0 += k) {
      const int64_t cols = std::min(k, width - c0);
      bool empty = true;
      for (int64_t i = 0; i < rows && empty; ++i)
        for (int64_t j = 0; j < cols && empty; ++j) empty = !pattern.is_sample[static_cast<size_t>(i * k + j)];
      for (int64_t c = c0; empty && c < c0 + cols; ++c) set(bits, 0, c);
    }
    return bits;
  };
  empty_full_ = empty_windows(full_rows_);
  empty_last_ = empty_windows(height - (CeilDiv(height, k) - 1) * k);
}

const TileKernels& SelectTileKernels(const std::string& request) {
#if defined(ONNXPRED_X86_TILES)
  __builtin_cpu_init();
  const bool has_avx512 = __builtin_cpu_supports("avx512f");
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (ChooseIsa(request, has_avx512, has_avx2)) {
    case Isa::kAvx512:
      return Avx512TileKernels();
    case Isa::kAvx2:
      return Avx2TileKernels();
    case Isa::kPortable:
      break;
  }
#else
  ChooseIsa(request, false, false);
#endif
  return PortableTileKernels();
}

}  // namespace onnxpred
