// Register transposes for the units built per instruction set (tiles_<isa>.cc, depthwise_<isa>.cc).
// Internal linkage, like simd.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace onnxpred {
namespace {

// Square blocks of floats transposed in registers: 8 x 8 in ymm where AVX2 exists, else 4 x 4
// with GCC vector extensions.
#if defined(__AVX2__)
struct TransposeBlocks {
  using Block = __m256;
  static constexpr int kSize = 8;
  static Block Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, Block b) { _mm256_storeu_ps(p, b); }
  static Block Zero() { return _mm256_setzero_ps(); }
  // r[i][j] becomes r[j][i].
  static void Transpose(Block (&r)[kSize]) {
    Block t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
      r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
  }
};
#else
struct TransposeBlocks {
  typedef float Block __attribute__((vector_size(16)));
  static constexpr int kSize = 4;
  static Block Load(const float* p) {
    Block b;
    std::memcpy(&b, p, sizeof b);
    return b;
  }
  static void Store(float* p, Block b) { std::memcpy(p, &b, sizeof b); }
  static Block Zero() { return Block{0.f, 0.f, 0.f, 0.f}; }
  // r[i][j] becomes r[j][i].
  static void Transpose(Block (&r)[kSize]) {
    const Block t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5);
    const Block t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
    const Block t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
    const Block t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
    r[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    r[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    r[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    r[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
  }
};
#endif
using Block = TransposeBlocks::Block;
constexpr int kBlock = TransposeBlocks::kSize;

// rows[t][i] = r[i][t] for i < kBlock, t < count.
inline void StoreTransposed(Block (&r)[kBlock], int64_t count, float* const* rows) {
  TransposeBlocks::Transpose(r);
  if (count == kBlock) {
    for (int i = 0; i < kBlock; ++i) TransposeBlocks::Store(rows[i], r[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) TransposeBlocks::Store(rows[i], r[i]);
  }
}

// rows[t][q] = vectors[q * kLanes + t] for q < pixels, t < valid: pixel-major vectors of channels
// into channel rows, in register blocks. A last partial block of pixels overlaps the one before it
// (rewriting the same values); fewer pixels than a block go one float at a time.
template <int kLanes>
void TransposeToRows(const float* vectors, int64_t pixels, int64_t valid, float* const* rows) {
  if (pixels < kBlock) {
    for (int64_t q = 0; q < pixels; ++q)
      for (int64_t t = 0; t < valid; ++t) rows[t][q] = vectors[q * kLanes + t];
    return;
  }
  for (int64_t p = 0; p < pixels; p += kBlock) {
    const int64_t q = std::min(p, pixels - kBlock);
    for (int64_t t0 = 0; t0 < valid; t0 += kBlock) {
      Block r[kBlock];
      float* shifted[kBlock];
      for (int i = 0; i < kBlock; ++i) {
        r[i] = TransposeBlocks::Load(vectors + (q + i) * kLanes + t0);
        shifted[i] = t0 + i < valid ? rows[t0 + i] + q : nullptr;
      }
      StoreTransposed(r, std::min<int64_t>(kBlock, valid - t0), shifted);
    }
  }
}

// vectors[q * kLanes + t] = rows[t][q] for q < pixels, t < valid: channel rows into pixel-major
// vectors, TransposeToRows's inverse (lanes past `valid` in a block become 0). A last partial block
// of pixels overlaps the one before it; fewer pixels than a block go one float at a time.
template <int kLanes>
void TransposeFromRows(const float* const* rows, int64_t pixels, int64_t valid, float* vectors) {
  if (pixels < kBlock) {
    for (int64_t q = 0; q < pixels; ++q)
      for (int64_t t = 0; t < valid; ++t) vectors[q * kLanes + t] = rows[t][q];
    return;
  }
  for (int64_t p = 0; p < pixels; p += kBlock) {
    const int64_t q = std::min(p, pixels - kBlock);
    for (int64_t t0 = 0; t0 < valid; t0 += kBlock) {
      Block r[kBlock];
      for (int i = 0; i < kBlock; ++i) r[i] = t0 + i < valid ? TransposeBlocks::Load(rows[t0 + i] + q) : TransposeBlocks::Zero();
      TransposeBlocks::Transpose(r);
      for (int i = 0; i < kBlock; ++i) TransposeBlocks::Store(vectors + (q + i) * kLanes + t0, r[i]);
    }
  }
}

}  // namespace
}  // namespace onnxpred
