// Vector instruction sets the tiled kernels are written against. Each one is compiled only in the
// translation unit built with its flags (tiles_<isa>.cc); everything here has internal linkage so
// the instantiations of different units never merge.
//
// Lane masks are bit sets (bit i: lane i). Activate matches the scalar Activate() of
// predictive_conv_kernel.h lane by lane, NaN and the sign of zero included. AboveLanes(v, t) are
// the lanes where !(v <= t), NaN included: the samples that keep a window from triggering when
// t = -margin (for activated values and margin 0: the non-zero lanes).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace onnxpred {
namespace {

// Keeps a loaded vector in a register: without it the compiler folds the same load into several
// FMAs as a memory operand, and the loads, not the FMAs, limit the gather tiles.
template <typename V>
inline V InRegister(V v) {
  asm("" : "+v"(v));
  return v;
}

#if defined(__AVX512F__)
struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V Zero() { return _mm512_setzero_ps(); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static V LoadPartial(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static V Broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void StorePartial(float* p, V v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static uint32_t AboveLanes(V v, V threshold) { return _mm512_cmp_ps_mask(v, threshold, _CMP_NLE_UQ); }
  static uint32_t ZeroLanes(V v) { return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_EQ_OQ); }
  static V KeepLanes(uint32_t lanes, V v) { return _mm512_maskz_mov_ps(static_cast<__mmask16>(lanes), v); }
  static int CountLanes(uint32_t lanes) { return __builtin_popcount(lanes); }
  static V Activate(V v, V clip_max) {
    const V positive = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
    return _mm512_min_ps(clip_max, positive);  // min returns its second operand on NaN
  }
  static float Sum(V v) {
    const __m512 high = _mm512_shuffle_f32x4(v, v, 0xEE);  // lanes 8..15 moved down
    const __m256 half = _mm512_castps512_ps256(_mm512_add_ps(v, high));
    const __m128 quarter = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    const __m128 pair = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
    return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
  }
  // out[j] = the sum of v[j]'s lanes for kLanes vectors: a transposing tree of 45 shuffles and adds,
  // where 16 calls of Sum take about 130.
  static void SumEach(const V (&v)[kLanes], float* out) {
    V half[8], quarter[4], eighth[2];
    for (int j = 0; j < 8; ++j)  // 256-bit halves: v[j] low, v[j + 8] high
      half[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44),
                              _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
    for (int j = 0; j < 4; ++j)  // 128-bit blocks: v[j], v[j + 8], v[j + 4], v[j + 12]
      quarter[j] = _mm512_add_ps(_mm512_shuffle_f32x4(half[j], half[j + 4], 0x88),
                                 _mm512_shuffle_f32x4(half[j], half[j + 4], 0xDD));
    for (int j = 0; j < 2; ++j)  // per block: two floats of quarter[j], two of quarter[j + 2]
      eighth[j] = _mm512_add_ps(_mm512_shuffle_ps(quarter[j], quarter[j + 2], 0x44),
                                _mm512_shuffle_ps(quarter[j], quarter[j + 2], 0xEE));
    const V sums =
        _mm512_add_ps(_mm512_shuffle_ps(eighth[0], eighth[1], 0x88), _mm512_shuffle_ps(eighth[0], eighth[1], 0xDD));
    // Lane 4q + r holds the vector of block q (0, 8, 4, 12) plus r's (0, 2, 1, 3): back in order.
    const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(order, sums));
  }
};
#elif defined(__AVX2__)
struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V Zero() { return _mm256_setzero_ps(); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256i FirstLanes(int64_t n) {
    alignas(32) static const int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - n));
  }
  static V LoadPartial(const float* p, int64_t n) { return _mm256_maskload_ps(p, FirstLanes(n)); }
  static V Broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void StorePartial(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, FirstLanes(n), v); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static uint32_t AboveLanes(V v, V threshold) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, threshold, _CMP_NLE_UQ)));
  }
  static uint32_t ZeroLanes(V v) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ)));
  }
  static V KeepLanes(uint32_t lanes, V v) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i keep = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(lanes)), bit), bit);
    return _mm256_and_ps(v, _mm256_castsi256_ps(keep));
  }
  static int CountLanes(uint32_t lanes) { return __builtin_popcount(lanes); }
  static V Activate(V v, V clip_max) {
    const V positive = _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLE_UQ));
    return _mm256_min_ps(clip_max, positive);  // min returns its second operand on NaN
  }
  static float Sum(V v) {
    const __m128 quarter = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 pair = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
    return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
  }
  // out[j] = the sum of v[j]'s lanes for kLanes vectors, by a transposing tree (see Avx512).
  static void SumEach(const V (&v)[kLanes], float* out) {
    V half[4], quarter[2];
    for (int j = 0; j < 4; ++j)  // 128-bit halves: v[j] low, v[j + 4] high
      half[j] = _mm256_add_ps(_mm256_permute2f128_ps(v[j], v[j + 4], 0x20),
                              _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
    for (int j = 0; j < 2; ++j)  // per half: two floats of half[j], two of half[j + 2]
      quarter[j] =
          _mm256_add_ps(_mm256_shuffle_ps(half[j], half[j + 2], 0x44), _mm256_shuffle_ps(half[j], half[j + 2], 0xEE));
    const V sums = _mm256_add_ps(_mm256_shuffle_ps(quarter[0], quarter[1], 0x88),
                                 _mm256_shuffle_ps(quarter[0], quarter[1], 0xDD));
    // Lane 4q + r holds the vector of half q (0, 4) plus r's (0, 2, 1, 3): back in order.
    _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7)));
  }
};
#else
// Any x86-64 (SSE2) or other CPU: GCC vector extensions, four lanes, no FMA.
struct Portable {
  typedef float V __attribute__((vector_size(16)));
  typedef int32_t Mask __attribute__((vector_size(16)));  // a comparison's lanes: -1 true, 0 false
  static constexpr int kLanes = 4;
  static V Zero() { return V{0.f, 0.f, 0.f, 0.f}; }
  static V Load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static V LoadPartial(const float* p, int64_t n) {
    V v = Zero();
    std::memcpy(&v, p, static_cast<size_t>(n) * sizeof(float));
    return v;
  }
  static V Broadcast(const float* p) { return V{*p, *p, *p, *p}; }
  static V Fma(V a, V b, V acc) { return acc + a * b; }
  static void Store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static void StorePartial(float* p, V v, int64_t n) { std::memcpy(p, &v, static_cast<size_t>(n) * sizeof(float)); }
  static V Add(V a, V b) { return a + b; }
  static uint32_t Bits(Mask m) {
    const Mask bits = m & Mask{1, 2, 4, 8};
    return static_cast<uint32_t>((bits[0] + bits[1]) + (bits[2] + bits[3]));
  }
  static uint32_t AboveLanes(V v, V threshold) { return Bits(~(v <= threshold)); }
  static uint32_t ZeroLanes(V v) { return Bits(v == Zero()); }
  static V KeepLanes(uint32_t lanes, V v) {
    const Mask bit{1, 2, 4, 8};
    return (bit & static_cast<int32_t>(lanes)) != 0 ? v : Zero();
  }
  // The baseline x86-64 has no popcnt instruction: its __builtin_popcount is a library call.
  static int CountLanes(uint32_t lanes) {
    return static_cast<int>((lanes & 1) + (lanes >> 1 & 1) + (lanes >> 2 & 1) + (lanes >> 3 & 1));
  }
  static V Activate(V v, V clip_max) {
    const V positive = v <= Zero() ? Zero() : v;
    return positive > clip_max ? clip_max : positive;
  }
  static float Sum(V v) { return (v[0] + v[2]) + (v[1] + v[3]); }
  static void SumEach(const V (&v)[kLanes], float* out) {
    for (int j = 0; j < kLanes; ++j) out[j] = Sum(v[j]);
  }
};
#endif

}  // namespace
}  // namespace onnxpred
