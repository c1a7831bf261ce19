// The path for 1x1, stride-1, unpadded, ungrouped convolutions (EfficientNet's expand and head
// layers): with a short reduction, gathering per window costs more than it saves, so every output
// is computed as a GEMM straight from NCHW (no layout copy, contiguous output rows), then the
// window rule zeroes the predicted outputs. macs_executed stays dense there: nothing was skipped.
#pragma once

#include <cstdint>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

class PointwiseConv : private ConvCall {
 public:
  // 1x1, stride 1, unpadded and ungrouped, on planes that fill the vectors of `kernels`.
  static bool Applies(const ConvGeometry& geometry, const TileKernels& kernels);

  // `tensors.packed_weights` is W as [M][C]; `input` is X (NCHW).
  PointwiseConv(const ConvCall& call, const TileKernels& kernels, const float* input);

  // Every output of an (image, block of channels, range of bands of windows), then the window rule
  // on them while they are in cache.
  int64_t Tasks() const { return geometry.batch * channel_blocks_ * band_blocks_; }
  PredictionCounters RunTask(int64_t task) const;

 private:
  const TileKernels& kernels_;
  const float* input_;
  BandRuleMasks masks_;
  int64_t pixels_, channel_blocks_;
  std::vector<int64_t> channel_offsets_;  // the row tiles' taps: input channel c at c * pixels_
  int64_t bands_per_block_ = 1, band_blocks_ = 1;
};

}  // namespace onnxpred
