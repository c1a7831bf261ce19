// The arithmetic of PredictiveQLinearConv, free of onnxruntime types: weight packing, the per-channel
// requantization parameters and the per-task driver (sample tiles, then the rest of the windows that
// are not triggered). Semantics: docs/predictive_conv.md and onnxpred/reference_quantized.py.
#pragma once

#include <cstdint>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/packed_floats.h"
#include "operators/conv/window_pattern.h"
#include "operators/qconv/quant_tiles.h"

namespace onnxpred {

// W [M][C][kH][kW] int8 packed once for one table: for the tiles [block][tap][group][lane][4 bytes],
// for the gather tiles a row per channel [tap][chunk][gather_channels], plus each channel's weight
// sum (the biased-bytes layout's zero-point correction). Padding weights are 0.
struct QuantWeights {
  using Bytes = std::vector<uint8_t, CacheLineAllocator<uint8_t>>;  // full-width loads never straddle two lines
  Bytes packed;
  Bytes rows;
  std::vector<int32_t> sums;  // [blocks * lanes]
  int64_t groups = 0;         // 4-byte channel groups per tap
  int64_t chunks = 0;         // gather chunks per tap
  int64_t row_bytes = 0;      // of a channel's gather row
};

// Bytes a tile may read past the input copy's last pixel (a gather chunk running on; zero weights).
constexpr int64_t kQuantInputSlack = 64;
QuantWeights PackQuantWeights(const int8_t* weights, int64_t out_channels, int64_t in_channels, int64_t taps,
                              const QuantTileKernels& tiles);

// The 4-byte groups a pixel of the input copy holds for `in_channels` channels in `layout`.
int64_t QuantGroups(int64_t in_channels, QuantInputLayout layout);

// s = fl32(fl32(x_scale * w_scale) / y_scale): onnxruntime's QLinearConv output scale.
float OutputScale(float x_scale, float w_scale, float y_scale);

// T[m] (reference_quantized.zero_thresholds): margin 0, the largest int32 acc whose output is the
// clamp value (fl32(fl32(acc) * scale) <= 0.5; every acc when y_zero_point is the type's maximum);
// margin > 0, floor(-margin / (x_scale * w_scale)) in double, clamped to int32.
int32_t ZeroThreshold(float scale, bool zero_point_is_max, float margin, float x_scale, float w_scale);

// Writes padded columns [column_begin, column_end) of padded row `row` (0 <= row < N * Hp) of the
// NHWC copy of x (NCHW, or NHWC when `channels_last`; int8 when `x_signed`).
void QuantInputRow(const uint8_t* x, bool x_signed, int32_t x_zero_point, const ConvGeometry& g, bool channels_last,
                   QuantInputLayout layout, int64_t groups, int64_t row, int64_t column_begin, int64_t column_end,
                   uint8_t* copy);

// Where the tiles read each output pixel's taps. An NHWC uint8 x of C a multiple of 4 is already the
// biased-bytes layout: the output pixels whose taps all lie inside x read x itself ("direct"), and
// the padded copy holds only what the others (the border) read. A gather chunk runs up to a chunk
// past a pixel's last channel (onto zero weights): where C is not whole chunks, the last image's
// rows that read x's last row read the copy, so that no load passes x's end. Otherwise every pixel
// reads the copy, all of it written. Copying a large layer's input cost 3-5% of its window-1 time.
// The region is whole windows of `window` outputs: a gather call takes one tap-offset table, and a
// window split between x and the copy cost two calls (VGG-16 conv5 at k = 3: 7-10% slower).
class QuantInputPlan {
 public:
  QuantInputPlan(const ConvGeometry& g, bool x_is_layout, int64_t gather_bytes, int64_t window);
  bool direct() const { return direct_; }
  // Whether output pixel (r, c) of image n reads x itself: its row and its column do.
  bool DirectRow(int64_t n, int64_t r) const {
    return direct_ && r >= row_begin_ && r < (n + 1 == batch_ ? last_image_row_end_ : row_end_);
  }
  bool DirectColumn(int64_t c) const { return c >= column_begin_ && c < column_end_; }
  bool Direct(int64_t n, int64_t r, int64_t c) const { return DirectRow(n, r) && DirectColumn(c); }
  // The padded columns of copy row `row` (of N * Hp) that some pixel reads: [0, Wp), none, or the
  // two bands the border columns read, as up to two [begin, end) spans.
  int CopySpans(int64_t row, int64_t (&spans)[2][2]) const;

 private:
  bool direct_ = false;
  int64_t batch_ = 0, padded_height_ = 0, padded_width_ = 0;
  int64_t row_begin_ = 0, row_end_ = 0, last_image_row_end_ = 0, column_begin_ = 0, column_end_ = 0;
  // The copy's rows read by the border rows: [0, top_rows_end_) and from bottom_rows_begin_ (of the
  // last image: last_image_bottom_begin_); in the others, [0, left_end_) and [right_begin_, Wp).
  int64_t top_rows_end_ = 0, bottom_rows_begin_ = 0, last_image_bottom_begin_ = 0, left_end_ = 0, right_begin_ = 0;
};

// One call: its geometry, settings, tensors and per-channel parameters (padded to whole blocks).
struct QuantCall {
  const ConvGeometry& geometry;
  const WindowPattern& pattern;
  bool audit;
  bool channels_last;        // Y is NHWC
  const QuantTileKernels& tiles;
  const QuantWeights& weights;
  const uint8_t* input;      // the NHWC copy, [N][Hp][Wp][groups * 4 bytes]
  QuantEpilogue epilogue;    // from channel 0
  const QuantInputPlan& plan;
  const uint8_t* x;          // x itself, NHWC, where the plan reads it directly
  uint8_t* output;           // Y [N][M][oH][oW] ([N][oH][oW][M] channels last), bytes of Y's type
};

// The plan of a call: a task is a band of k output rows of one image (a row of windows), or a few
// on small planes, and its blocks of channels (all of them, or a share on images of few bands).
// Block by block, its samples are computed first (dense tiles of consecutive samples), then the
// rest outputs of the windows that keep a channel, by the tiles with masked stores or gathered per
// kept channel; triggered ones stay y_zero_point. The tiles write an NHWC Y in place; for an NCHW Y
// a block's outputs are staged pixel-major and transposed into its planes.
class QuantConv {
 public:
  explicit QuantConv(const QuantCall& call);
  int64_t Tasks() const { return call_.geometry.batch * tasks_per_image_; }
  PredictionCounters RunTask(int64_t task) const;

 private:
  struct PendingPixel {
    QuantPixel input;
    uint8_t* out;  // its outputs, a byte a lane of the block
  };
  class PixelBatch;
  // RunTask, with the block's vectors split between the tiles and the gather tiles or not.
  template <bool kSplitVectors>
  PredictionCounters RunTaskWith(int64_t task) const;
  // Writes the rest outputs `rest` of one window for the channels of `block` set in `keep`, through
  // the gather tiles (the others of the block stay y_zero_point).
  void GatherRest(int64_t block, uint64_t keep, const std::vector<PendingPixel>& rest, int64_t rest_count) const;

  // A task of a small plane takes whole bands up to about this many outputs, and with windows of
  // several outputs at least this many bands (a 7x7 layer at k = 3 in one band task instead of three
  // ran 6% faster: fewer part-filled tiles). At window 1 a band is one row, and rows of 3 made 19
  // tasks of a 56-row layer: 2 threads ran 1-7% slower than with a row a task (its part-filled tile
  // cost 1 thread up to 1%).
  static constexpr int64_t kTaskPixels = 36;
  static constexpr int64_t kMinBandsPerTask = 3;
  // An image of fewer band tasks than this splits its blocks among tasks (one band task at 7x7 or
  // 14x14 and k = 3 left a thread of two idle a third of the layer).
  static constexpr int64_t kMinTasksPerImage = 8;
  // VGG-16 int8 at k = 3, 2 threads: conv1_2's 25 band tasks made 28 and the 28x28 layers' 9 made 12
  // ran 1-2.6% faster (1 thread alike).
  static constexpr int64_t kTaskMultiple = 4;
  // A window's rest is gathered when kept channels x GatherCost(its rest outputs) < the block's
  // channels x dense_cost_ x its rest outputs, in tenths of a dense tile's multiply-add vector (64 MACs
  // on AVX-512). A dense output costs its share of the tile's vectors plus kDenseOutputCost (epilogue,
  // store); a gathered one a vector per tap and chunk of gather_channels (a 3-channel stem's 27 MACs
  // take 9 vectors), each kGatherVectorCost, plus kGatherOutputCost (horizontal sums, requantization,
  // setup), which grows to 2x when a window's rest outputs fill its gather calls little: (pixels the
  // calls could take + rest outputs) / 2 of them are paid. In VGG-16 int8 at k = 3 the fixed part was
  // 100 (about 8 ns an output), which put K = 576's break-even at half the block, where 55% and 70% ran
  // 5% and 12% slower, and 40 or 60 up to 15% slower (alike at K >= 1152); with those tiles,
  // at k = 2 (2 rest outputs a window, 6-pixel calls on AVX-512) paying 1.5 times ran 2-11% faster
  // than paying it once on every VGG-16 and ResNet-18 3x3 shape; 3 times made the 7x7 layers' clipped
  // windows at k = 3 up to 7% slower. Since the AVX-512 gather tiles keep their sums in registers (a
  // 4 x 6 call at K = 576: 98 ns instead of 114, of which 62 are its MACs at the dense tiles' rate) the
  // fixed part is 70: VGG-16's conv1_2 at k = 3 in the model ran 2-3% faster than with 100, 50 and 85
  // ran as 70 within 0.5%. So a window gathers below 11% kept at K = 27, 58% at 576, 68% at 1152, 74%
  // at 2304 and 79% at 4608. The AVX2 gather tiles cost 1.4 dense vectors a vector.
  static constexpr int64_t kDenseOutputCost = 14;
  static constexpr int64_t kGatherVectorCost = 12;
  static constexpr int64_t kGatherOutputCost = 70;
  // Windows split a block's vectors between the tiles and the gather tiles (SplitChannels) only at
  // reductions C * kH * kW of at least this: below, a vector fewer saves little beside the tile's fixed
  // part (Lite0's 1x1 layers of 112-320 input channels at k = 3 ran 2.5-3.7% slower splitting).
  static constexpr int64_t kMinSplitReduction = 512;

  const QuantCall& call_;
  int64_t k_, bands_, windows_, blocks_;  // per image: bands of k rows, windows per band, channel blocks
  int64_t band_tasks_, block_tasks_, tasks_per_image_;  // per image: tasks along the bands, the blocks
  std::vector<int64_t> copy_tap_offsets_, direct_tap_offsets_;  // of a pixel read from the copy, from x
  // A window's rest outputs, row-major: pixels from its corner, and bytes from its corner's input in
  // the copy and in x.
  std::vector<int64_t> rest_pixels_, rest_copy_offsets_, rest_direct_offsets_;
  // Windows whose rest outputs (k = 2's 2) fill a third of a gather tile's pixels alone are gathered
  // in runs of up to this many, as many as fill a tile.
  static constexpr int64_t kMaxRunWindows = 3;
  int64_t run_windows_;
  std::vector<int64_t> column_phase_, column_window_;  // per output column: c % k, c / k
  // The cost of gathering one kept channel's `rest_outputs` rest outputs of a window.
  int64_t GatherCost(int64_t rest_outputs) const;
  // A window's kept channels `keep` of a block (`valid` lanes, `mask`): all `gathered` where that costs
  // less than the block by its tiles, else `computed` by the tiles; with `split_vectors`, the vectors
  // at either end of the block whose kept channels cost less gathered than the vector's multiply-adds
  // are gathered instead, and the tiles compute the span between. With the layers' channels ordered by
  // activity, a window's kept channels gather at one end of a block (VGG-16 int8 conv1_2: kept shares
  // 0.14, 0.46, 0.66 and 0.95 of its four vectors; with the split it ran 4.5-5% faster at k = 3).
  struct ChannelSplit {
    uint64_t computed, gathered;
  };
  ChannelSplit SplitChannels(uint64_t keep, uint64_t mask, int64_t valid, int64_t rest_outputs,
                             bool split_vectors) const;
  int64_t vector_lanes_;  // lanes per vector of the tiles
  bool split_vectors_;    // the reduction is at least kMinSplitReduction
  int64_t gather_vectors_;  // of a gathered output: taps x chunks
  int64_t dense_cost_;      // of an output computed with its block
};

}  // namespace onnxpred
