#include "operators/conv/pointwise_conv.h"

#include <algorithm>
#include <vector>

namespace onnxpred {
namespace {

// A task's pixels: whole bands of windows covering at least a few tiles, whose input columns
// (C x tile width) stay in L2 while the task's channel tiles pass over them.
constexpr int64_t kTilesPerPixelBlock = 4;
constexpr int64_t kTilesPerChannelBlock = 4;

constexpr int64_t kMaxEmptyLanePercent = 10;

}  // namespace

bool PointwiseConv::Applies(const ConvGeometry& g, const TileKernels& kernels) {
  const bool pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
                         g.group == 1 && g.pad_top == 0 && g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
  // Vectorised along a plane's pixels, a small plane leaves lanes of its last vector empty: at
  // 7x7 (49 of 64 lanes) the tiled path, vectorised along channels, ran 0.80-0.89 of onnxruntime
  // where this one ran 0.74; at 14x14 (196 of 208) this one led, 0.88 to 0.69-0.76.
  const int64_t pixels = g.out_height * g.out_width;
  const int64_t lanes = CeilDiv(pixels, kernels.lanes) * kernels.lanes;
  return pointwise && (lanes - pixels) * 100 <= kMaxEmptyLanePercent * pixels;
}

PointwiseConv::PointwiseConv(const ConvCall& call, const TileKernels& kernels, const float* input)
    : ConvCall(call),
      kernels_(kernels),
      input_(input),
      masks_(pattern, geometry.out_width, geometry.out_height),
      pixels_(geometry.out_height * geometry.out_width),
      channel_blocks_(CeilDiv(geometry.out_channels, kernels.row_tile_channels * kTilesPerChannelBlock)) {
  const int64_t band_pixels = pattern.size * geometry.out_width;
  const int64_t bands = CeilDiv(geometry.out_height, pattern.size);
  bands_per_block_ = std::min(bands, CeilDiv(kernels.row_tile_pixels * kTilesPerPixelBlock, band_pixels));
  band_blocks_ = CeilDiv(bands, bands_per_block_);
  for (int64_t c = 0; c < geometry.in_channels; ++c) channel_offsets_.push_back(c * pixels_);
}

PredictionCounters PointwiseConv::RunTask(int64_t task) const {
  const int64_t band_block = task % band_blocks_;
  const int64_t channel_block = task / band_blocks_ % channel_blocks_;
  const int64_t n = task / band_blocks_ / channel_blocks_;
  const int64_t tile_channels = kernels_.row_tile_channels, tile_pixels = kernels_.row_tile_pixels;
  const int64_t c_count = geometry.in_channels, k = pattern.size;
  const int64_t m_begin = channel_block * tile_channels * kTilesPerChannelBlock;
  const int64_t m_end = std::min(geometry.out_channels, m_begin + tile_channels * kTilesPerChannelBlock);
  const int64_t band_begin = band_block * bands_per_block_, band_end = band_begin + bands_per_block_;
  const int64_t q_begin = band_begin * k * geometry.out_width;
  const int64_t q_end = std::min(pixels_, band_end * k * geometry.out_width);
  const float* image = input_ + n * c_count * pixels_;
  const float* weights[kMaxRowTileChannels];
  float* rows[kMaxRowTileChannels];
  const float* residuals[kMaxRowTileChannels];
  float bias[kMaxRowTileChannels];
  RowTileOutput out;
  out.rows = rows;
  out.residuals = tensors.residual ? residuals : nullptr;
  out.bias = bias;
  out.clip_max = activation.clip_max;
  out.threshold = -margin;
  // The band rule's scratch, then the trigger bits of the task's pixels: a bit row per channel
  // (bit 0: pixel q_begin) and a word of padding.
  const int64_t above_words = CeilDiv(q_end - q_begin, 64) + 1;
  std::vector<uint64_t> work(static_cast<size_t>(masks_.scratch_size() + (m_end - m_begin) * above_words), 0);
  uint64_t* const scratch = work.data();
  uint64_t* const above_bits = scratch + masks_.scratch_size();
  uint64_t* above[kMaxRowTileChannels];
  const bool records = RecordsTriggers();
  out.above = records ? above : nullptr;
  int64_t computed = 0;

  for (int64_t q0 = q_begin; q0 < q_end; q0 += tile_pixels) {
    const int64_t width = std::min(tile_pixels, q_end - q0);
    for (int64_t m0 = m_begin; m0 < m_end; m0 += tile_channels) {
      const int64_t channels = std::min(tile_channels, m_end - m0);
      // A short last tile repeats its last channel's weights; only real channels are stored and counted.
      for (int64_t i = 0; i < tile_channels; ++i)
        weights[i] = tensors.packed_weights + (m0 + std::min(i, channels - 1)) * c_count;
      for (int64_t i = 0; i < channels; ++i) {
        const int64_t offset = (n * geometry.out_channels + m0 + i) * pixels_ + q0;
        rows[i] = tensors.output + offset;
        residuals[i] = tensors.residual ? tensors.residual + offset : nullptr;
        bias[i] = tensors.bias ? tensors.bias[m0 + i] : 0.f;
        above[i] = above_bits + (m0 + i - m_begin) * above_words;
      }
      out.first_bit = q0 - q_begin;
      out.channels = channels;
      kernels_.row_tiles[CeilDiv(width, kernels_.lanes) - 1](c_count, channel_offsets_.data(), weights, image + q0,
                                                             width, out);
      computed += channels * width;
    }
  }
  // The block's outputs are still in cache: apply the window rule to its bands now.
  PredictionCounters counters;
  counters.macs_executed = computed * geometry.macs_per_output();
  for (int64_t m = m_begin; records && m < m_end; ++m) {
    float* plane = tensors.output + (n * geometry.out_channels + m) * pixels_;
    counters += kernels_.band_rule(masks_, plane, above_bits + (m - m_begin) * above_words, geometry.out_height,
                                   band_begin, band_end, audit, scratch);
  }
  return counters;
}

}  // namespace onnxpred
