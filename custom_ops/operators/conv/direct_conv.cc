#include "operators/conv/direct_conv.h"

#include <algorithm>
#include <type_traits>

#include "operators/conv/tiled_conv.h"

namespace onnxpred {
namespace {

// A task: one row tile of channels over bands of at least this many row tiles. Its outputs stay in
// L1 for the window rule, and few planes are written at once: tasks of 16 channels (4 tiles) ran
// VGG-16's stem 10-15% slower at k = 1 and 3.
constexpr int64_t kTilesPerTask = 4;

// The tiled path gathers reductions whose runs fill two vectors or more, and computes shorter ones
// in one pass of NHWC tiles (a 3-channel stem's 3x3 runs: 9 floats). Up to three vectors its
// gather tiles still leave lanes empty: ResNet-18's stem (runs of 21 floats) on AVX2 ran 9-28%
// faster here than gathered at k = 1, 2, 3, shares 0 and 0.5.
constexpr int64_t kMaxRunVectors = 3;

// Vectorised along a row, a row that does not fill its vectors leaves lanes of the last empty: as
// on the pointwise path, at most this share.
constexpr int64_t kMaxEmptyLanePercent = 10;

// A row tile has at most kMaxRowTileVectors vectors of 16 lanes.
constexpr int64_t kTileBitWords = (kMaxRowTileVectors * 16 + 63) / 64;

// ORs `count` bits into `row` from bit `first`; a word of padding follows the bits.
void OrBits(uint64_t* row, int64_t first, const uint64_t* bits, int64_t count) {
  for (int64_t w = 0; w < CeilDiv(count, 64); ++w) {
    const int64_t word = (first + 64 * w) / 64, shift = (first + 64 * w) % 64;
    row[word] |= bits[w] << shift;
    if (shift != 0) row[word + 1] |= bits[w] >> (64 - shift);
  }
}

}  // namespace

bool DirectConv::Applies(const ConvGeometry& g, const TileKernels& kernels) {
  const int64_t lanes = CeilDiv(g.out_width, kernels.lanes) * kernels.lanes;
  return g.group == 1 && MakeTapLayout(g).run_length < kMaxRunVectors * kernels.lanes &&
         (lanes - g.out_width) * 100 <= kMaxEmptyLanePercent * g.out_width;
}

DirectConv::DirectConv(const ConvCall& call, const TileKernels& kernels, const float* input)
    : ConvCall(call),
      kernels_(kernels),
      input_(input),
      masks_(pattern, geometry.out_width, geometry.out_height),
      phase_columns_(CeilDiv(geometry.padded_width(), geometry.stride_w)),
      row_floats_(geometry.stride_w * phase_columns_),
      padded_(new float[static_cast<size_t>(CopyTasks() * row_floats_)]),
      channel_tiles_(CeilDiv(geometry.out_channels, kernels.row_tile_channels)) {
  const ConvGeometry& g = geometry;
  const int64_t channel_floats = g.padded_height() * row_floats_;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh)
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t column = kw * g.dilation_w;  // from the first output's, in its phase's columns
      const int64_t row_offset =
          kh * g.dilation_h * row_floats_ + column % g.stride_w * phase_columns_ + column / g.stride_w;
      for (int64_t c = 0; c < g.in_channels; ++c) tap_offsets_.push_back(c * channel_floats + row_offset);
    }
  const int64_t row_vectors = CeilDiv(g.out_width, kernels.lanes);
  const int64_t max_vectors = kernels.row_tile_pixels / kernels.lanes;
  tile_pixels_ = CeilDiv(row_vectors, CeilDiv(row_vectors, max_vectors)) * kernels.lanes;
  const int64_t bands = CeilDiv(g.out_height, pattern.size);
  bands_per_block_ = std::min(bands, CeilDiv(tile_pixels_ * kTilesPerTask, pattern.size * g.out_width));
  band_blocks_ = CeilDiv(bands, bands_per_block_);
}

void DirectConv::CopyInputRow(int64_t row) const {
  const ConvGeometry& g = geometry;
  const int64_t h = row % g.padded_height() - g.pad_top, plane = row / g.padded_height();
  float* out = padded_.get() + row * row_floats_;
  if (h < 0 || h >= g.in_height) {
    std::fill(out, out + row_floats_, 0.f);
    return;
  }
  const float* in = input_ + (plane * g.in_height + h) * g.in_width;
  for (int64_t phase = 0; phase < g.stride_w; ++phase) {
    // Phase column j is padded column j * stride_w + phase: X's column that less pad_left.
    float* phase_out = out + phase * phase_columns_;
    const int64_t first = phase - g.pad_left;
    const int64_t j_begin = std::min(phase_columns_, CeilDiv(std::max<int64_t>(0, -first), g.stride_w));
    const int64_t j_end = std::max(j_begin, std::min(phase_columns_, CeilDiv(g.in_width - first, g.stride_w)));
    std::fill(phase_out, phase_out + j_begin, 0.f);
    // A constant stride (the stems' 1 and 2) lets the compiler vectorise the copy: at stride 2 it
    // took a sixth of EfficientNet-Lite0's stem (3->32 at 112x112 outputs) one float at a time.
    auto copy = [&](auto stride) {
      for (int64_t j = j_begin; j < j_end; ++j) phase_out[j] = in[j * stride + first];
    };
    if (g.stride_w == 1) {
      copy(std::integral_constant<int64_t, 1>());
    } else if (g.stride_w == 2) {
      copy(std::integral_constant<int64_t, 2>());
    } else {
      copy(g.stride_w);
    }
    std::fill(phase_out + j_end, phase_out + phase_columns_, 0.f);
  }
}

PredictionCounters DirectConv::RunTask(int64_t task) const {
  const ConvGeometry& g = geometry;
  const int64_t band_block = task % band_blocks_;
  const int64_t m0 = task / band_blocks_ % channel_tiles_ * kernels_.row_tile_channels;
  const int64_t n = task / band_blocks_ / channel_tiles_;
  const int64_t channels = std::min(kernels_.row_tile_channels, g.out_channels - m0);
  const int64_t k = pattern.size, width = g.out_width;
  const int64_t band_begin = band_block * bands_per_block_, band_end = band_begin + bands_per_block_;
  const int64_t row_begin = band_begin * k, row_end = std::min(g.out_height, band_end * k);
  const int64_t plane = g.out_height * width, taps = static_cast<int64_t>(tap_offsets_.size());
  const float* image = padded_.get() + n * g.in_channels * g.padded_height() * row_floats_;
  const float* weights[kMaxRowTileChannels];
  float* rows[kMaxRowTileChannels];
  const float* residuals[kMaxRowTileChannels];
  float bias[kMaxRowTileChannels];
  // A short last tile repeats its last channel's weights; only real channels are stored.
  for (int64_t i = 0; i < kernels_.row_tile_channels; ++i)
    weights[i] = tensors.packed_weights + (m0 + std::min(i, channels - 1)) * taps;
  for (int64_t i = 0; i < channels; ++i) bias[i] = tensors.bias ? tensors.bias[m0 + i] : 0.f;
  RowTileOutput out;
  out.channels = channels;
  out.rows = rows;
  out.residuals = tensors.residual ? residuals : nullptr;
  out.bias = bias;
  out.clip_max = activation.clip_max;
  out.threshold = -margin;
  // The band rule's scratch, then the trigger bits of the task's outputs: a bit row per channel
  // (bit 0: output (row_begin, 0)) and a word of padding. A tile records its bits from a multiple
  // of the lanes: in place where rows fill their vectors, else in words of its own first
  // (kTileBitWords), then ORed in at their place.
  const int64_t above_words = CeilDiv((row_end - row_begin) * width, 64) + 1;
  std::vector<uint64_t> work(static_cast<size_t>(masks_.scratch_size() + channels * above_words), 0);
  uint64_t* const scratch = work.data();
  uint64_t* const above_bits = scratch + masks_.scratch_size();
  const bool in_place = width % kernels_.lanes == 0;
  uint64_t tile_bits[kMaxRowTileChannels][kTileBitWords];
  uint64_t* above[kMaxRowTileChannels];
  for (int64_t i = 0; i < channels; ++i) above[i] = in_place ? above_bits + i * above_words : tile_bits[i];
  const bool records = RecordsTriggers();
  out.above = records ? above : nullptr;

  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* input_row = image + r * g.stride_h * row_floats_;
    for (int64_t c0 = 0; c0 < width; c0 += tile_pixels_) {
      const int64_t pixels = std::min(tile_pixels_, width - c0), first_bit = (r - row_begin) * width + c0;
      for (int64_t i = 0; i < channels; ++i) {
        const int64_t offset = (n * g.out_channels + m0 + i) * plane + r * width + c0;
        rows[i] = tensors.output + offset;
        residuals[i] = tensors.residual ? tensors.residual + offset : nullptr;
        if (!in_place) std::fill(tile_bits[i], tile_bits[i] + kTileBitWords, 0);
      }
      out.first_bit = in_place ? first_bit : 0;
      kernels_.row_tiles[CeilDiv(pixels, kernels_.lanes) - 1](taps, tap_offsets_.data(), weights, input_row + c0,
                                                              pixels, out);
      for (int64_t i = 0; records && !in_place && i < channels; ++i)
        OrBits(above_bits + i * above_words, first_bit, tile_bits[i], pixels);
    }
  }
  // The tile's outputs are still in cache: apply the window rule to its bands now.
  PredictionCounters counters;
  counters.macs_executed = channels * (row_end - row_begin) * width * g.macs_per_output();
  for (int64_t i = 0; records && i < channels; ++i) {
    float* y = tensors.output + (n * g.out_channels + m0 + i) * plane;
    counters += kernels_.band_rule(masks_, y, above_bits + i * above_words, g.out_height, band_begin, band_end, audit,
                                   scratch);
  }
  return counters;
}

}  // namespace onnxpred
