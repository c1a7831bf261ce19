// The path for ungrouped convolutions whose reduction runs (a kernel row's taps, TapLayout) are
// shorter than a few vectors: the 3-channel stems, K = 27 or 147. The tiled path would compute
// them in one pass of NHWC tiles, whose epilogue and scattered stores cost more than their few
// FMAs, or gather runs that leave lanes empty; here every output is computed straight into NCHW
// rows by row tiles (vectorised along a row, weights broadcast), then the window rule zeroes the
// predicted outputs. They read a zero-padded NCHW copy of X whose rows are split by column phase
// (at stride 2: the even columns, then the odd ones), so that a tap's inputs for consecutive
// outputs are consecutive floats at any stride. macs_executed stays dense: nothing was skipped.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

class DirectConv : private ConvCall {
 public:
  // Ungrouped, runs of fewer than a few vectors of `kernels`, on rows that fill its vectors.
  static bool Applies(const ConvGeometry& geometry, const TileKernels& kernels);

  // `tensors.packed_weights` is W as [M][kH][kW][C] (PackWeights); `input` is X (NCHW).
  DirectConv(const ConvCall& call, const TileKernels& kernels, const float* input);

  // The padded copy of X, one row of one channel per task: every one before any RunTask.
  int64_t CopyTasks() const { return geometry.batch * geometry.in_channels * geometry.padded_height(); }
  void CopyInputRow(int64_t row) const;

  // Every output of an (image, row tile of channels, range of bands of windows), then the window
  // rule on them while they are in cache.
  int64_t Tasks() const { return geometry.batch * channel_tiles_ * band_blocks_; }
  PredictionCounters RunTask(int64_t task) const;

 private:
  const TileKernels& kernels_;
  const float* input_;
  BandRuleMasks masks_;
  // A copied row: stride_w phases of phase_columns_ floats; column j * stride_w + p of the padded
  // row is float p * phase_columns_ + j.
  int64_t phase_columns_, row_floats_;
  std::unique_ptr<float[]> padded_;    // [N][C][Hp][row_floats_]
  std::vector<int64_t> tap_offsets_;   // per (kh, kw, c), PackWeights's order: from output (0, 0)'s
  int64_t tile_pixels_;                // a row's tiles, of equal vector counts but the last
  int64_t channel_tiles_, bands_per_block_ = 1, band_blocks_ = 1;
};

}  // namespace onnxpred
