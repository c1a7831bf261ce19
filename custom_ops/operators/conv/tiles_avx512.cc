// Compiled with AVX-512F + FMA: 32 channels x 14 pixels dense tiles, 4 x 6 gather tiles, 4 x 96-pixel pointwise tiles (zmm).
#include "operators/conv/tiles.h"

namespace onnxpred {
namespace {

constexpr int kDenseVectors = 2;
constexpr int kDenseChannels = kDenseVectors * Avx512::kLanes;

// StoreRowGroupsFn: the tile transposed into channel rows (TransposeToRows), then per channel and
// group one permute of its pixels into their columns and one masked store. (A scalar store per output
// took about 5% of VGG-16's 64-channel layers at k = 2 and 3.)
void StoreRowGroupsAvx512(const float* values, int64_t count, int64_t channels, const TileRowGroups& groups, float* y,
                          int64_t plane) {
  alignas(64) float channel_rows[kDenseChannels][kRowGroupColumns];
  float* rows[kDenseChannels];
  for (int64_t j = 0; j < channels; ++j) rows[j] = channel_rows[j];
  TransposeToRows<kDenseChannels>(values, count, channels, rows);
  const __mmask16 pixels = static_cast<__mmask16>((1u << count) - 1);  // the lanes TransposeToRows wrote
  for (int64_t g = 0; g < groups.count; ++g) {
    const __m512i sources = _mm512_loadu_si512(groups.sources[g]);
    const __mmask16 columns = static_cast<__mmask16>(groups.columns[g]);
    float* row = y + groups.offsets[g];
    for (int64_t j = 0; j < channels; ++j) {
      const __m512 channel = _mm512_maskz_load_ps(pixels, channel_rows[j]);
      _mm512_mask_storeu_ps(row + j * plane, columns, _mm512_permutexvar_ps(sources, channel));
    }
  }
}

}  // namespace

const TileKernels& Avx512TileKernels() {
  static const TileKernels kernels = [] {
    TileKernels made = MakeTileKernels<Avx512, kDenseVectors, 14, 4, 6, 4, 6>("avx512");
    made.store_row_groups = &StoreRowGroupsAvx512;
    return made;
  }();
  return kernels;
}
}  // namespace onnxpred
