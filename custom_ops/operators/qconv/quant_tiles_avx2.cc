// The AVX2 int8 tiles: 16 channels (2 ymm) x up to 6 pixels over the centred-shorts layout.
// vpmaddwd multiplies int16 pairs into int32 exactly (|x - zp| <= 255, |w| <= 128): unlike
// vpmaddubsw, nothing saturates, so the sums are the reference's.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "operators/qconv/quant_tiles.h"

namespace onnxpred {
namespace {

constexpr int64_t kLanes = 16;

inline __m256i BroadcastGroup(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// The low byte of each int32 of `q` to out[i] where bit i of `keep` is set (8 bytes at most).
inline void StoreLowBytes(__m256i q, uint8_t keep, uint8_t* out) {
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i bytes = _mm256_shuffle_epi8(q, pick);
  const __m128i both = _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1));
  if (keep == 0xff) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), both);
    return;
  }
  // Byte by byte: the bytes past the kept ones may be another pixel's (Y itself when it is NHWC),
  // which a read-modify-write of all 8 would race with.
  uint8_t values[8];
  _mm_storel_epi64(reinterpret_cast<__m128i*>(values), both);
  for (unsigned bits = keep; bits != 0; bits &= bits - 1) out[__builtin_ctz(bits)] = values[__builtin_ctz(bits)];
}

template <int P, int V>
void Avx2Tile(const QuantTile& t, const QuantPixel* pixels, uint8_t* const* outs, const uint64_t* store,
              uint64_t* zero_bits) {
  __m256i acc[P][V];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) acc[p][v] = _mm256_setzero_si256();
  const uint8_t* w = t.weights;
  for (int64_t tap = 0; tap < t.taps; ++tap) {
    const uint8_t* x[P];
    for (int p = 0; p < P; ++p) x[p] = pixels[p].input + pixels[p].tap_offsets[tap];
    for (int64_t g = 0; g < t.groups; ++g, w += kLanes * 4) {
      __m256i wv[V];
      for (int v = 0; v < V; ++v) wv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * v));
      for (int p = 0; p < P; ++p) {
        const __m256i xv = BroadcastGroup(x[p] + 4 * g);
        for (int v = 0; v < V; ++v) acc[p][v] = _mm256_add_epi32(acc[p][v], _mm256_madd_epi16(xv, wv[v]));
      }
    }
  }
  const QuantEpilogue& e = t.epilogue;
  const __m256 zero = _mm256_setzero_ps(), range = _mm256_set1_ps(e.range);
  const __m256i zero_point = _mm256_set1_epi32(e.zero_point);
  for (int p = 0; p < P; ++p) {
    uint64_t bits = 0;
    for (int v = 0; v < V; ++v) {
      const __m256i offset = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.offset + 8 * v));
      const __m256i threshold = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.threshold + 8 * v));
      const __m256i sum = _mm256_add_epi32(acc[p][v], offset);
      const __m256i above = _mm256_cmpgt_epi32(sum, threshold);
      bits |= static_cast<uint64_t>(~_mm256_movemask_ps(_mm256_castsi256_ps(above)) & 0xff) << (8 * v);
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_loadu_ps(e.scale + 8 * v));
      f = _mm256_min_ps(_mm256_max_ps(f, zero), range);
      // vcvtps2dq rounds as MXCSR says: to nearest even, onnxruntime's assumption too.
      StoreLowBytes(_mm256_add_epi32(_mm256_cvtps_epi32(f), zero_point), static_cast<uint8_t>(store[p] >> (8 * v)),
                    outs[p] + 8 * v);
    }
    zero_bits[p] = bits;
  }
}

// C channels x P pixels, 16 input channels (int16) a vpmaddwd, summed across the lanes at the end.
struct Avx2Gather {
  template <int C, int P>
  static void Run(const QuantGather& g, const QuantPixel* pixels, const uint8_t* const* weights,
                  const int64_t* lanes, uint8_t* const* outs) {
    __m256i acc[C][P];
    for (int c = 0; c < C; ++c)
      for (int p = 0; p < P; ++p) acc[c][p] = _mm256_setzero_si256();
    for (int64_t tap = 0; tap < g.taps; ++tap) {
      for (int64_t chunk = 0; chunk < g.chunks; ++chunk) {
        __m256i x[P];
        for (int p = 0; p < P; ++p) {
          const uint8_t* input = pixels[p].input + pixels[0].tap_offsets[tap] + 32 * chunk;
          x[p] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(input));
        }
        for (int c = 0; c < C; ++c) {
          const uint8_t* row = weights[c] + (tap * g.chunks + chunk) * 32;
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row));
          for (int p = 0; p < P; ++p) acc[c][p] = _mm256_add_epi32(acc[c][p], _mm256_madd_epi16(x[p], w));
        }
      }
    }
    int32_t sums[C * P];
    for (int c = 0; c < C; ++c)
      for (int p = 0; p < P; ++p) {
        const __m128i half = _mm_add_epi32(_mm256_castsi256_si128(acc[c][p]), _mm256_extracti128_si256(acc[c][p], 1));
        const __m128i quarter = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0x4e));
        sums[c * P + p] = _mm_cvtsi128_si32(_mm_add_epi32(quarter, _mm_shuffle_epi32(quarter, 0xb1)));
      }
    StoreGathered(g, sums, C, P, lanes, outs);
  }
};

template <int V, int... P>
constexpr QuantTileRow TileRow(std::integer_sequence<int, P...>) {
  return {&Avx2Tile<P + 1, V>...};
}

constexpr QuantTileKernels MakeTable() {
  constexpr auto pixels = std::make_integer_sequence<int, kMaxQuantPixels>();
  return {"avx2", QuantInputLayout::kCentredShorts, kLanes, 2, {TileRow<1>(pixels), TileRow<2>(pixels)}, 16, 3,
          GatherTable<Avx2Gather, 3>()};
}

}  // namespace

const QuantTileKernels& Avx2QuantTiles() {
  static const QuantTileKernels kernels = MakeTable();
  return kernels;
}

}  // namespace onnxpred
