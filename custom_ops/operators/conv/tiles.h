// The micro-kernels, written once against an instruction set `Isa` (simd.h) and instantiated by
// each tiles_<isa>.cc. Fixed tile sizes keep every accumulator in a register.
#pragma once

#include "operators/conv/simd.h"
#include "operators/conv/tile_kernels.h"

namespace onnxpred {
namespace {

// kPixels pixels x (kVectors * lanes) channels; the input is broadcast, weights are loaded once per
// reduction step and reused by every pixel.
template <typename Isa, int kVectors, int kPixels>
void DenseTile(const TapLayout& taps, const float* weights, const float* const* pixels, float* out) {
  using V = typename Isa::V;
  constexpr int kLanes = Isa::kLanes;
  V acc[kPixels][kVectors];
#pragma GCC unroll 16
  for (int p = 0; p < kPixels; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[p][v] = Isa::Zero();
  const float* w = weights;
  for (int64_t row = 0; row < taps.kernel_rows; ++row) {
    for (int64_t run = 0; run < taps.runs; ++run) {
      const int64_t offset = row * taps.row_step + run * taps.run_step;
      const float* x[kPixels];
#pragma GCC unroll 16
      for (int p = 0; p < kPixels; ++p) x[p] = pixels[p] + offset;
      for (int64_t c = 0; c < taps.run_length; ++c, w += kVectors * kLanes) {
        V wv[kVectors];
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) wv[v] = Isa::Load(w + v * kLanes);
#pragma GCC unroll 16
        for (int p = 0; p < kPixels; ++p) {
          const V xb = Isa::Broadcast(x[p] + c);
#pragma GCC unroll 4
          for (int v = 0; v < kVectors; ++v) acc[p][v] = Isa::Fma(xb, wv[v], acc[p][v]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < kPixels; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) Isa::Store(out + (p * kVectors + v) * kLanes, acc[p][v]);
}

// kChannels channels x kPixels pixels, vectorised along the reduction; horizontal sums at the end.
template <typename Isa, int kChannels, int kPixels>
void GatherTile(const TapLayout& taps, const float* const* weights, const float* const* pixels, float* out) {
  using V = typename Isa::V;
  constexpr int kLanes = Isa::kLanes;
  V acc[kChannels][kPixels];
#pragma GCC unroll 8
  for (int i = 0; i < kChannels; ++i)
#pragma GCC unroll 8
    for (int p = 0; p < kPixels; ++p) acc[i][p] = Isa::Zero();
  const int64_t full = taps.run_length - taps.run_length % kLanes;
  const int64_t rest = taps.run_length - full;
  int64_t w_offset = 0;
  for (int64_t row = 0; row < taps.kernel_rows; ++row) {
    for (int64_t run = 0; run < taps.runs; ++run, w_offset += taps.run_length) {
      const int64_t x_offset = row * taps.row_step + run * taps.run_step;
      const float* w[kChannels];
      const float* x[kPixels];
#pragma GCC unroll 8
      for (int i = 0; i < kChannels; ++i) w[i] = weights[i] + w_offset;
#pragma GCC unroll 8
      for (int p = 0; p < kPixels; ++p) x[p] = pixels[p] + x_offset;
      for (int64_t c = 0; c < full; c += kLanes) {
        V wv[kChannels];
#pragma GCC unroll 8
        for (int i = 0; i < kChannels; ++i) wv[i] = InRegister(Isa::Load(w[i] + c));
#pragma GCC unroll 8
        for (int p = 0; p < kPixels; ++p) {
          const V xv = InRegister(Isa::Load(x[p] + c));
#pragma GCC unroll 8
          for (int i = 0; i < kChannels; ++i) acc[i][p] = Isa::Fma(wv[i], xv, acc[i][p]);
        }
      }
      if (rest) {
        V wv[kChannels];
#pragma GCC unroll 8
        for (int i = 0; i < kChannels; ++i) wv[i] = Isa::LoadPartial(w[i] + full, rest);
#pragma GCC unroll 8
        for (int p = 0; p < kPixels; ++p) {
          const V xv = Isa::LoadPartial(x[p] + full, rest);
#pragma GCC unroll 8
          for (int i = 0; i < kChannels; ++i) acc[i][p] = Isa::Fma(wv[i], xv, acc[i][p]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kChannels; ++i)
#pragma GCC unroll 8
    for (int p = 0; p < kPixels; ++p) out[i * kPixels + p] = Isa::Sum(acc[i][p]);
}

template <typename Isa, int kDenseVectors, int kDensePixels, int kGatherChannels, int kGatherPixels>
TileKernels MakeTileKernels(const char* name) {
  return TileKernels{name,
                     Isa::kLanes,
                     kDenseVectors * Isa::kLanes,
                     kDensePixels,
                     &DenseTile<Isa, kDenseVectors, kDensePixels>,
                     kGatherChannels,
                     kGatherPixels,
                     &GatherTile<Isa, kGatherChannels, kGatherPixels>};
}

}  // namespace
}  // namespace onnxpred
