// Compiled with AVX-512F + FMA: 32 channels x 14 pixels dense tiles, 4 x 6 gather tiles, 4 x 96-pixel pointwise tiles (zmm).
#include "operators/conv/tiles.h"

namespace onnxpred {
namespace {

// r[i][j] becomes r[j][i] for 16 vectors of 16 floats.
void Transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  // Block b of r[4m + q] now holds column 4b + q of rows 4m .. 4m + 3: column 4b + q is block b of
  // r[q], r[q + 4], r[q + 8] and r[q + 12], gathered in two rounds of 128-bit shuffles.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
  }
}

// StoreRowGroupsFn: 16 channels at a time transposed in registers, then per channel and group one
// permute of its pixels into their columns and one masked store. (A scalar store per output took
// about 5% of VGG-16's 64-channel layers at k = 2 and 3.)
void StoreRowGroupsAvx512(const float* values, int64_t block, int64_t count, int64_t channels,
                          const TileRowGroups& groups, float* y, int64_t plane) {
  for (int64_t j0 = 0; j0 < channels; j0 += 16) {
    __m512 r[16];
    for (int64_t p = 0; p < 16; ++p) r[p] = p < count ? _mm512_loadu_ps(values + p * block + j0) : _mm512_setzero_ps();
    Transpose16(r);
    for (int64_t g = 0; g < groups.count; ++g) {
      const __m512i sources = _mm512_loadu_si512(groups.sources[g]);
      const __mmask16 columns = static_cast<__mmask16>(groups.columns[g]);
      float* row = y + j0 * plane + groups.offsets[g];
      for (int64_t j = 0; j < std::min<int64_t>(16, channels - j0); ++j)
        _mm512_mask_storeu_ps(row + j * plane, columns, _mm512_permutexvar_ps(sources, r[j]));
    }
  }
}

}  // namespace

const TileKernels& Avx512TileKernels() {
  static const TileKernels kernels = [] {
    TileKernels made = MakeTileKernels<Avx512, 2, 14, 4, 6, 4, 6>("avx512");
    made.store_row_groups = &StoreRowGroupsAvx512;
    return made;
  }();
  return kernels;
}
}  // namespace onnxpred
