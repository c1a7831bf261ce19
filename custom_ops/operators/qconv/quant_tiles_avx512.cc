// The AVX-512 VNNI int8 tiles: 64 channels (4 zmm) x up to 6 pixels over the biased-bytes layout,
// one vpdpbusd (u8 x s8, 4 products summed into int32, no saturation) per 16 channels x 4 inputs.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "operators/qconv/quant_tiles.h"

namespace onnxpred {
namespace {

constexpr int64_t kLanes = 64;

template <int P, int V>
void VnniTile(const QuantTile& t, const QuantPixel* pixels, uint8_t* const* outs, const uint64_t* store,
              uint64_t* zero_bits) {
  __m512i acc[P][V];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) acc[p][v] = _mm512_setzero_si512();
  const uint8_t* w = t.weights;
  for (int64_t tap = 0; tap < t.taps; ++tap) {
    const uint8_t* x[P];
    for (int p = 0; p < P; ++p) x[p] = pixels[p].input + pixels[p].tap_offsets[tap];
    for (int64_t g = 0; g < t.groups; ++g, w += kLanes * 4) {
      __m512i wv[V];
      for (int v = 0; v < V; ++v) wv[v] = _mm512_loadu_si512(w + 64 * v);
      for (int p = 0; p < P; ++p) {
        int32_t group;
        std::memcpy(&group, x[p] + 4 * g, sizeof group);
        const __m512i xv = _mm512_set1_epi32(group);
        for (int v = 0; v < V; ++v) acc[p][v] = _mm512_dpbusd_epi32(acc[p][v], xv, wv[v]);
      }
    }
  }
  // Locals: a byte store may alias the tile's fields, which would be reloaded after each one.
  const int32_t* offset = t.epilogue.offset;
  const int32_t* threshold = t.epilogue.threshold;
  const float* scale = t.epilogue.scale;
  const __m512 zero = _mm512_setzero_ps(), range = _mm512_set1_ps(t.epilogue.range);
  // Requantized values lie in [0, range] <= 255: packed to bytes without saturating, then y_zero_point
  // added modulo 256 (the two's complement of an int8 Y, the value of a uint8 one, which cannot pass
  // 255). Two in-lane packs leave lane i holding bytes 4i..4i+3 of each vector: one permute orders them.
  const __m512i zero_point = _mm512_set1_epi8(static_cast<char>(t.epilogue.zero_point));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  // Unrolled, so that the accumulators stay in registers: a loop over p would index them in memory
  // (zeroed and spilled on every call, a sixth of a short reduction's tile).
#pragma GCC unroll 6
  for (int p = 0; p < P; ++p) {
    uint64_t bits = 0;
    __m512i q[4];
    for (int v = 0; v < 4; ++v) {
      if (v >= V) {
        q[v] = _mm512_setzero_si512();
        continue;
      }
      const __m512i sum = _mm512_add_epi32(acc[p][v], _mm512_loadu_si512(offset + 16 * v));
      bits |= static_cast<uint64_t>(_mm512_cmple_epi32_mask(sum, _mm512_loadu_si512(threshold + 16 * v))) << (16 * v);
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_loadu_ps(scale + 16 * v));
      f = _mm512_min_ps(_mm512_max_ps(f, zero), range);
      q[v] = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    const __m512i words = _mm512_packus_epi32(q[0], q[1]);
    const __m512i bytes = V > 2 ? _mm512_packus_epi16(words, _mm512_packus_epi32(q[2], q[3]))
                                : _mm512_packus_epi16(words, _mm512_setzero_si512());
    // One masked store of the 64 bytes; lanes past V vectors are never in `store`.
    _mm512_mask_storeu_epi8(outs[p], store[p], _mm512_add_epi8(_mm512_permutexvar_epi32(order, bytes), zero_point));
    zero_bits[p] = bits;
  }
}

// r[i] = the sum of v[i]'s 16 lanes for i < 16: a transposing tree (pairs interleaved and added,
// 15 steps) in place of 16 horizontal sums of 4 steps each.
inline __m512i SumLanes16(const __m512i* v) {
  __m512i pairs[8], quads[4], halves[2];
  for (int j = 0; j < 8; ++j) {  // 128-bit lane: [v2j 0+2, v2j+1 0+2, v2j 1+3, v2j+1 1+3]
    pairs[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * j], v[2 * j + 1]),
                                _mm512_unpackhi_epi32(v[2 * j], v[2 * j + 1]));
  }
  for (int j = 0; j < 4; ++j) {  // 128-bit lane: the lane's sums of v4j .. v4j+3
    quads[j] = _mm512_add_epi32(_mm512_unpacklo_epi64(pairs[2 * j], pairs[2 * j + 1]),
                                _mm512_unpackhi_epi64(pairs[2 * j], pairs[2 * j + 1]));
  }
  // 0x88 takes 128-bit lanes [a0, a2, b0, b2], 0xdd [a1, a3, b1, b3]: each step adds neighbouring lanes.
  for (int j = 0; j < 2; ++j) {
    halves[j] = _mm512_add_epi32(_mm512_shuffle_i32x4(quads[2 * j], quads[2 * j + 1], 0x88),
                                 _mm512_shuffle_i32x4(quads[2 * j], quads[2 * j + 1], 0xdd));
  }
  return _mm512_add_epi32(_mm512_shuffle_i32x4(halves[0], halves[1], 0x88),
                          _mm512_shuffle_i32x4(halves[0], halves[1], 0xdd));
}

// C channels x P pixels, 64 input channels a vpdpbusd; the C x P sums by SumLanes16 and requantized
// 16 at a time.
struct VnniGather {
  template <int C, int P>
  static void Run(const QuantGather& g, const QuantPixel* pixels, const uint8_t* const* weights,
                  const int64_t* lanes, uint8_t* const* outs) {
    constexpr int kCount = C * P, kGroups = (kCount + 15) / 16;
    // Every index of acc is a constant once the loops over it are unrolled, so that it lives in registers.
    // GCC unrolls a loop of more than 16 iterations only when told, and the epilogue takes its groups
    // by template: left as loops, they kept acc in a stack array that rep stos zeroed on every call.
    __m512i acc[kCount];  // [c * P + p]
#pragma GCC unroll 24
    for (int i = 0; i < kCount; ++i) acc[i] = _mm512_setzero_si512();
    const int64_t* tap_offsets = pixels[0].tap_offsets;
    const uint8_t* inputs[P];
    for (int p = 0; p < P; ++p) inputs[p] = pixels[p].input;
    // One 64-byte step of the reduction: the pixels' inputs at `offset`, the rows' weights at `row_offset`.
    auto step = [&](int64_t offset, int64_t row_offset) __attribute__((always_inline)) {
      __m512i x[P];
      for (int p = 0; p < P; ++p) x[p] = _mm512_loadu_si512(inputs[p] + offset);
      for (int c = 0; c < C; ++c) {
        const __m512i w = _mm512_loadu_si512(weights[c] + row_offset);
        for (int p = 0; p < P; ++p) acc[c * P + p] = _mm512_dpbusd_epi32(acc[c * P + p], x[p], w);
      }
    };
    // With these, a 4 x 6 call at K = 576 ran in 98 ns instead of 114 (216 vpdpbusd: 62 ns at the
    // dense tiles' rate), 160 instead of 173 at K = 1152.
    if (g.chunks == 1) {  // a tap a step, without an inner loop to enter and leave per tap
      for (int64_t tap = 0; tap < g.taps; ++tap) step(tap_offsets[tap], 64 * tap);
    } else {
      int64_t row_offset = 0;
      for (int64_t tap = 0; tap < g.taps; ++tap) {
        for (int64_t chunk = 0; chunk < g.chunks; ++chunk, row_offset += 64) {
          step(tap_offsets[tap] + 64 * chunk, row_offset);
        }
      }
    }
    // The C channels' offsets and scales, spread to the sums' order (c * P + p) by a permute: written
    // lane by lane to memory, the vector load after them waited for the stores (3-4% of a 4 x 6 call at
    // K = 576).
    const QuantEpilogue& e = g.epilogue;
    alignas(16) int32_t channel_offsets[4];
    alignas(16) float channel_scales[4];
    for (int c = 0; c < 4; ++c) {
      channel_offsets[c] = e.offset[lanes[std::min(c, C - 1)]];
      channel_scales[c] = e.scale[lanes[std::min(c, C - 1)]];
    }
    const __m512i offsets = _mm512_castsi128_si512(_mm_load_si128(reinterpret_cast<const __m128i*>(channel_offsets)));
    const __m512 scales = _mm512_castps128_ps512(_mm_load_ps(channel_scales));
    StoreGroups<C, P>(acc, offsets, scales, e, lanes, outs, std::make_integer_sequence<int, kGroups>());
  }

 private:
  template <int C, int P, int... Group>
  static inline __attribute__((always_inline)) void StoreGroups(const __m512i* acc, __m512i offsets, __m512 scales,
                                                                const QuantEpilogue& e, const int64_t* lanes,
                                                                uint8_t* const* outs, std::integer_sequence<int, Group...>) {
    (StoreGroup<C, P, Group>(acc, offsets, scales, e, lanes, outs), ...);
  }

  // Requantizes and stores sums [16 * Group, 16 * Group + 16) of the C x P (c * P + p).
  template <int C, int P, int Group>
  static inline __attribute__((always_inline)) void StoreGroup(const __m512i* acc, __m512i offsets, __m512 scales,
                                                               const QuantEpilogue& e, const int64_t* lanes,
                                                               uint8_t* const* outs) {
    constexpr int kCount = C * P, kFirst = 16 * Group;
    const __m512 zero = _mm512_setzero_ps(), range = _mm512_set1_ps(e.range);
    const __m512i zero_point = _mm512_set1_epi32(e.zero_point);
    alignas(64) int32_t channel_of[16];  // the channel of each of the group's sums (constants)
    for (int i = 0; i < 16; ++i) channel_of[i] = std::min(kFirst + i, kCount - 1) / P;
    const __m512i order = _mm512_load_si512(channel_of);
    const __m512i sum = _mm512_add_epi32(GroupSums<kCount, kFirst>(acc, std::make_integer_sequence<int, 16>()),
                                         _mm512_permutexvar_epi32(order, offsets));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_permutexvar_ps(order, scales));
    f = _mm512_min_ps(_mm512_max_ps(f, zero), range);
    const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                       zero_point);
    alignas(16) uint8_t bytes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), _mm512_cvtepi32_epi8(q));
    for (int i = 0; i < 16 && kFirst + i < kCount; ++i) {
      const int index = kFirst + i;
      outs[index % P][lanes[index / P]] = bytes[i];
    }
  }

  // SumLanes16 of acc[First], ..., acc[First + 15], zeros past acc[Count - 1].
  template <int Count, int First, int... I>
  static inline __attribute__((always_inline)) __m512i GroupSums(const __m512i* acc, std::integer_sequence<int, I...>) {
    const __m512i sixteen[16] = {(First + I < Count ? acc[std::min(First + I, Count - 1)] : _mm512_setzero_si512())...};
    return SumLanes16(sixteen);
  }
};

template <int V, int... P>
constexpr QuantTileRow TileRow(std::integer_sequence<int, P...>) {
  return {&VnniTile<P + 1, V>...};
}

constexpr QuantTileKernels MakeTable() {
  constexpr auto pixels = std::make_integer_sequence<int, kMaxQuantPixels>();
  return {"avx512", QuantInputLayout::kBiasedBytes, kLanes, 4,
          {TileRow<1>(pixels), TileRow<2>(pixels), TileRow<3>(pixels), TileRow<4>(pixels)}, 64, 6,
          GatherTable<VnniGather, 6>()};
}

}  // namespace

const QuantTileKernels& Avx512VnniQuantTiles() {
  static const QuantTileKernels kernels = MakeTable();
  return kernels;
}

}  // namespace onnxpred
