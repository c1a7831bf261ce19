// The AVX-512 VNNI int8 tiles: 64 channels (4 zmm) x up to 6 pixels over the biased-bytes layout,
// one vpdpbusd (u8 x s8, 4 products summed into int32, no saturation) per 16 channels x 4 inputs.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "operators/qconv/quant_tiles.h"

namespace onnxpred {
namespace {

constexpr int64_t kLanes = 64;

template <int P>
void VnniTile(const QuantTile& t, const uint8_t* const* pixels, uint8_t* const* outs, const uint64_t* store,
              uint64_t* zero_bits) {
  __m512i acc[P][4];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < 4; ++v) acc[p][v] = _mm512_setzero_si512();
  const uint8_t* w = t.weights;
  for (int64_t tap = 0; tap < t.taps; ++tap) {
    const uint8_t* x[P];
    for (int p = 0; p < P; ++p) x[p] = pixels[p] + t.tap_offsets[tap];
    for (int64_t g = 0; g < t.groups; ++g, w += kLanes * 4) {
      __m512i wv[4];
      for (int v = 0; v < 4; ++v) wv[v] = _mm512_loadu_si512(w + 64 * v);
      for (int p = 0; p < P; ++p) {
        int32_t group;
        std::memcpy(&group, x[p] + 4 * g, sizeof group);
        const __m512i xv = _mm512_set1_epi32(group);
        for (int v = 0; v < 4; ++v) acc[p][v] = _mm512_dpbusd_epi32(acc[p][v], xv, wv[v]);
      }
    }
  }
  const QuantEpilogue& e = t.epilogue;
  const __m512 zero = _mm512_setzero_ps(), range = _mm512_set1_ps(e.range);
  const __m512i zero_point = _mm512_set1_epi32(e.zero_point);
  for (int p = 0; p < P; ++p) {
    uint64_t bits = 0;
    for (int v = 0; v < 4; ++v) {
      const __m512i sum = _mm512_add_epi32(acc[p][v], _mm512_loadu_si512(e.offset + 16 * v));
      bits |= static_cast<uint64_t>(_mm512_cmple_epi32_mask(sum, _mm512_loadu_si512(e.threshold + 16 * v))) << (16 * v);
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_loadu_ps(e.scale + 16 * v));
      f = _mm512_min_ps(_mm512_max_ps(f, zero), range);
      const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                         zero_point);
      _mm_mask_storeu_epi8(outs[p] + 16 * v, static_cast<__mmask16>(store[p] >> (16 * v)), _mm512_cvtepi32_epi8(q));
    }
    zero_bits[p] = bits;
  }
}

// C channels x P pixels, 64 input channels a vpdpbusd, summed across the lanes at the end.
struct VnniGather {
  template <int C, int P>
  static void Run(const QuantGather& g, const uint8_t* const* pixels, const uint8_t* const* weights, int32_t* sums) {
    __m512i acc[C][P];
    for (int c = 0; c < C; ++c)
      for (int p = 0; p < P; ++p) acc[c][p] = _mm512_setzero_si512();
    for (int64_t tap = 0; tap < g.taps; ++tap) {
      for (int64_t chunk = 0; chunk < g.chunks; ++chunk) {
        __m512i x[P];
        for (int p = 0; p < P; ++p) x[p] = _mm512_loadu_si512(pixels[p] + g.tap_offsets[tap] + 64 * chunk);
        for (int c = 0; c < C; ++c) {
          const __m512i w = _mm512_loadu_si512(weights[c] + (tap * g.chunks + chunk) * 64);
          for (int p = 0; p < P; ++p) acc[c][p] = _mm512_dpbusd_epi32(acc[c][p], x[p], w);
        }
      }
    }
    for (int c = 0; c < C; ++c)
      for (int p = 0; p < P; ++p) sums[c * P + p] = _mm512_reduce_add_epi32(acc[c][p]);
  }
};

template <int... P>
constexpr QuantTileKernels MakeTable(std::integer_sequence<int, P...>) {
  return {"avx512", QuantInputLayout::kBiasedBytes, kLanes, {&VnniTile<P + 1>...}, 64, 6,
          GatherTable<VnniGather, 6>()};
}

}  // namespace

const QuantTileKernels& Avx512VnniQuantTiles() {
  static const QuantTileKernels kernels = MakeTable(std::make_integer_sequence<int, kMaxQuantPixels>());
  return kernels;
}

}  // namespace onnxpred
