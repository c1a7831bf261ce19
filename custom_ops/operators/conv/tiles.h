// The micro-kernels, written once against an instruction set `Isa` (simd.h) and instantiated by
// each tiles_<isa>.cc. Fixed tile sizes keep every accumulator in a register.
#pragma once

#include <algorithm>
#include <utility>

#include "operators/conv/band_rule.h"
#include "operators/conv/simd.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/transpose_blocks.h"

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

template <typename Isa, int kVectors>
void FinishDenseTile(float* values, int64_t count, int64_t channels, const DenseTileEpilogue& e,
                     int64_t& dropped_zero, int64_t& dropped_nonzero) {
  using V = typename Isa::V;
  constexpr int kLanes = Isa::kLanes, kBlockLanes = kVectors * kLanes;
  static_assert(kBlockLanes <= 32, "a block's lanes fit one uint32_t mask");
  const V clip = Isa::Broadcast(&e.clip_max), threshold = Isa::Broadcast(&e.threshold);
  V bias[kVectors];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) bias[v] = Isa::Load(e.bias + v * kLanes);
  const uint32_t valid = static_cast<uint32_t>((uint64_t{1} << channels) - 1);
  // Z of the tile's pixels, pixel-major like the sums: where the pixels are consecutive, the
  // channels' rows transposed in registers, else one float a pixel and channel (row p of `residuals`).
  float residuals[kMaxDensePixels * kBlockLanes];
  if (e.residual && channels < kBlockLanes) std::fill(residuals, residuals + count * kBlockLanes, 0.f);
  const bool consecutive_residuals = e.residual && e.consecutive;
  if (consecutive_residuals) {
    const float* rows[kBlockLanes];
    for (int64_t j = 0; j < channels; ++j) rows[j] = e.residual + j * e.plane + e.offsets[0];
    TransposeFromRows<kBlockLanes>(rows, count, channels, residuals);
  }
  for (int64_t p = 0; p < count; ++p) {
    float* sums = values + p * kBlockLanes;
    const float* residual = residuals + (consecutive_residuals ? p * kBlockLanes : 0);
    if (e.residual && !consecutive_residuals) {
      for (int64_t j = 0; j < channels; ++j) residuals[j] = e.residual[j * e.plane + e.offsets[p]];
    }
    uint32_t above = 0;
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      V x = Isa::Add(Isa::Load(sums + v * kLanes), bias[v]);
      if (e.residual) x = Isa::Add(x, Isa::Load(residual + v * kLanes));
      if (e.marks) above |= Isa::AboveLanes(x, threshold) << (v * kLanes);  // the trigger reads P
      x = Isa::Activate(x, clip);
      if (e.keeps) {
        const uint32_t lanes = valid >> (v * kLanes) & ((uint32_t{1} << kLanes) - 1);
        const uint32_t keep = e.keeps[p] >> (v * kLanes);
        const uint32_t zero = Isa::ZeroLanes(x);
        dropped_zero += Isa::CountLanes(lanes & ~keep & zero);
        dropped_nonzero += Isa::CountLanes(lanes & ~keep & ~zero);
        x = Isa::KeepLanes(keep, x);
      }
      Isa::Store(sums + v * kLanes, x);
    }
    if (e.marks) *e.marks[p] |= above & valid;
  }
}

// kChannels channels x kPixels pixels, vectorised along the reduction; horizontal sums at the end,
// then each output finished and stored to its channel's plane.
template <typename Isa, int kChannels, int kPixels>
void GatherTile(const TapLayout& taps, const float* const* weights, const float* const* pixels,
                const GatherTileEpilogue& e) {
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
  // The horizontal sums: one Sum per accumulator took about a tenth of a 4 x 6 tile over 128 input
  // channels. Where the accumulators fill at least half a vector, SumEach reduces a vector of them
  // at a time (the last group padded with zeros).
  constexpr int kCount = kChannels * kPixels;
  constexpr int kGroups = (kCount + kLanes - 1) / kLanes;
  float sums[kGroups * kLanes];  // [channel][pixel]
  if constexpr (2 * kCount < kLanes) {
#pragma GCC unroll 8
    for (int i = 0; i < kChannels; ++i)
#pragma GCC unroll 8
      for (int p = 0; p < kPixels; ++p) sums[i * kPixels + p] = Isa::Sum(acc[i][p]);
  } else {
#pragma GCC unroll 4
    for (int g = 0; g < kGroups; ++g) {
      V group[kLanes];
#pragma GCC unroll 16
      for (int l = 0; l < kLanes; ++l) {
        const int index = g * kLanes + l;
        group[l] = index < kCount ? acc[index / kPixels][index % kPixels] : Isa::Zero();
      }
      Isa::SumEach(group, sums + g * kLanes);
    }
  }
  // Scalar: the outputs scatter to kChannels planes, and a store-to-load round trip into vectors
  // would cost more than the few adds it saves.
#pragma GCC unroll 8
  for (int i = 0; i < kChannels; ++i) {
    float* row = e.rows[i];
    const float* residual = e.residuals ? e.residuals[i] : nullptr;
#pragma GCC unroll 8
    for (int p = 0; p < kPixels; ++p) {
      float v = sums[i * kPixels + p] + e.bias[i];
      if (residual) v += residual[e.offsets[p]];
      const float positive = v <= 0.f ? 0.f : v;  // Activate(): NaN propagates
      row[e.offsets[p]] = positive > e.clip_max ? e.clip_max : positive;
    }
  }
}

// kChannels channels x kVectors vectors of consecutive outputs of a row; weights broadcast, each
// channel's row finished and stored straight into its NCHW plane. `pixels` lies in
// ((kVectors - 1) * lanes, kVectors * lanes]: only the last vector may be partial (a row's end).
template <typename Isa, int kChannels, int kVectors>
void RowTile(int64_t taps, const int64_t* tap_offsets, const float* const* weights, const float* input,
             int64_t pixels, const RowTileOutput& out) {
  using V = typename Isa::V;
  constexpr int kLanes = Isa::kLanes;
  const int64_t last_lanes = pixels - (kVectors - 1) * kLanes;
  V acc[kChannels][kVectors];
#pragma GCC unroll 8
  for (int i = 0; i < kChannels; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) acc[i][v] = Isa::Zero();
  auto step = [&](const float* x, int64_t t, V last) {
    V xv[kVectors];
#pragma GCC unroll 8
    for (int v = 0; v + 1 < kVectors; ++v) xv[v] = InRegister(Isa::Load(x + v * kLanes));
    xv[kVectors - 1] = last;
#pragma GCC unroll 8
    for (int i = 0; i < kChannels; ++i) {
      const V wb = Isa::Broadcast(weights[i] + t);
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) acc[i][v] = Isa::Fma(wb, xv[v], acc[i][v]);
    }
  };
  constexpr int64_t kLastOffset = (kVectors - 1) * kLanes;
  if (last_lanes == kLanes) {
    for (int64_t t = 0; t < taps; ++t) {
      const float* x = input + tap_offsets[t];
      step(x, t, InRegister(Isa::Load(x + kLastOffset)));
    }
  } else {
    for (int64_t t = 0; t < taps; ++t) {
      const float* x = input + tap_offsets[t];
      step(x, t, Isa::LoadPartial(x + kLastOffset, last_lanes));
    }
  }
  const V clip = Isa::Broadcast(&out.clip_max), threshold = Isa::Broadcast(&out.threshold);
  const uint32_t last_valid = static_cast<uint32_t>((uint64_t{1} << last_lanes) - 1);
#pragma GCC unroll 8
  for (int i = 0; i < kChannels; ++i) {
    if (i >= out.channels) break;
    const V bias = Isa::Broadcast(out.bias + i);
    float* row = out.rows[i];
    uint64_t* above = out.above ? out.above[i] : nullptr;
    const float* residual = out.residuals ? out.residuals[i] : nullptr;
#pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) {
      const bool last = v == kVectors - 1;
      V y = Isa::Add(acc[i][v], bias);  // bias first, then the residual: PreActivation's order
      if (residual) {
        y = Isa::Add(y, last ? Isa::LoadPartial(residual + v * kLanes, last_lanes) : Isa::Load(residual + v * kLanes));
      }
      if (above) {
        const int64_t bit = out.first_bit + v * kLanes;  // the trigger reads P
        above[bit / 64] |= uint64_t{Isa::AboveLanes(y, threshold) & (last ? last_valid : ~0u)} << (bit % 64);
      }
      y = Isa::Activate(y, clip);
      if (last) {
        Isa::StorePartial(row + v * kLanes, y, last_lanes);
      } else {
        Isa::Store(row + v * kLanes, y);
      }
    }
  }
}

// ChannelsToPixelsFn in square register blocks; leftover channels and pixels one float at a time.
void ChannelsToPixelsByBlocks(const float* rows, int64_t channel_stride, int64_t channels, int64_t width,
                              int64_t pixel_stride, float* pixels) {
  int64_t c = 0;
  for (; c + kBlock <= channels; c += kBlock) {
    int64_t w = 0;
    for (; w + kBlock <= width; w += kBlock) {
      Block r[kBlock];
      float* targets[kBlock];
      for (int i = 0; i < kBlock; ++i) {
        r[i] = TransposeBlocks::Load(rows + (c + i) * channel_stride + w);
        targets[i] = pixels + (w + i) * pixel_stride + c;
      }
      StoreTransposed(r, kBlock, targets);
    }
    for (; w < width; ++w)
      for (int64_t i = 0; i < kBlock; ++i) pixels[w * pixel_stride + c + i] = rows[(c + i) * channel_stride + w];
  }
  for (int64_t w = 0; c < channels && w < width; ++w)
    for (int64_t i = c; i < channels; ++i) pixels[w * pixel_stride + i] = rows[i * channel_stride + w];
}

// PixelsToChannelsFn for blocks of kBlockLanes channels.
template <int kBlockLanes>
void PixelsToChannelsByBlocks(const float* values, int64_t count, int64_t channels, float* y, int64_t plane) {
  float* rows[kBlockLanes];
  for (int64_t j = 0; j < channels; ++j) rows[j] = y + j * plane;
  TransposeToRows<kBlockLanes>(values, count, channels, rows);
}

template <typename Isa, int kChannels, size_t... kVectorCounts>
void FillRowTiles(RowTileFn* table, std::index_sequence<kVectorCounts...>) {
  ((table[kVectorCounts] = &RowTile<Isa, kChannels, static_cast<int>(kVectorCounts) + 1>), ...);
}

template <typename Isa, int kVectors, size_t... kPixelCounts>
void FillDenseTiles(DenseTileFn* table, std::index_sequence<kPixelCounts...>) {
  ((table[kPixelCounts] = &DenseTile<Isa, kVectors, static_cast<int>(kPixelCounts) + 1>), ...);
}

template <typename Isa, int kChannels, size_t... kPixelCounts>
void FillGatherTiles(GatherTileFn* table, std::index_sequence<kPixelCounts...>) {
  ((table[kPixelCounts] = &GatherTile<Isa, kChannels, static_cast<int>(kPixelCounts) + 1>), ...);
}

template <typename Isa, int kDenseVectors, int kDensePixels, int kGatherChannels, int kGatherPixels,
          int kRowTileChannels, int kRowTileVectors>
TileKernels MakeTileKernels(const char* name) {
  static_assert(kGatherChannels >= 1 && kGatherChannels <= kMaxGatherChannels, "gather tile too wide");
  TileKernels kernels{name,
                      Isa::kLanes,
                      kDenseVectors * Isa::kLanes,
                      kDensePixels,
                      {},
                      &FinishDenseTile<Isa, kDenseVectors>,
                      kGatherChannels,
                      kGatherPixels,
                      {},
                      kRowTileChannels,
                      kRowTileVectors * Isa::kLanes,
                      {},
                      &ApplyBandRule<Isa>,
                      &ChannelsToPixelsByBlocks,
                      &PixelsToChannelsByBlocks<kDenseVectors * Isa::kLanes>,
                      nullptr};
  static_assert(kRowTileVectors <= kMaxRowTileVectors, "row tile too wide");
  static_assert(kRowTileChannels <= kMaxRowTileChannels, "row tile too tall");
  static_assert(kDensePixels <= kMaxDensePixels, "dense tile too wide");
  FillDenseTiles<Isa, kDenseVectors>(kernels.dense, std::make_index_sequence<kDensePixels>());
  FillRowTiles<Isa, kRowTileChannels>(kernels.row_tiles, std::make_index_sequence<kRowTileVectors>());
  static_assert(kGatherPixels <= kMaxGatherPixels, "gather tile too wide");
  constexpr auto kPixelCounts = std::make_index_sequence<kGatherPixels>();
  FillGatherTiles<Isa, 1>(kernels.gather[0], kPixelCounts);
  if constexpr (kGatherChannels >= 2) FillGatherTiles<Isa, 2>(kernels.gather[1], kPixelCounts);
  if constexpr (kGatherChannels >= 3) FillGatherTiles<Isa, 3>(kernels.gather[2], kPixelCounts);
  if constexpr (kGatherChannels >= 4) FillGatherTiles<Isa, 4>(kernels.gather[3], kPixelCounts);
  return kernels;
}

}  // namespace
}  // namespace onnxpred
