// The path for 1x1, stride-1, unpadded, ungrouped convolutions (EfficientNet's expand and head
// layers): with a short reduction, gathering per window costs more than it saves, so every output
// is computed as a GEMM straight from NCHW (no layout copy, contiguous output rows), then the
// window rule zeroes the predicted outputs. macs_executed stays dense there: nothing was skipped.
#pragma once

#include <cstdint>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

class PointwiseConv {
 public:
  static bool Applies(const ConvGeometry& geometry);

  // `tensors.packed_weights` is W as [M][C]; `input` is X (NCHW).
  PointwiseConv(const ConvGeometry& geometry, const ActivationParams& activation, const WindowPattern& pattern,
                bool audit, const TileKernels& kernels, const ConvTensors& tensors, const float* input);

  // Every output of an (image, block of channels, range of bands of windows), then the window rule
  // on them while they are in cache.
  int64_t Tasks() const { return g_.batch * channel_blocks_ * band_blocks_; }
  PredictionCounters RunTask(int64_t task) const;

 private:
  const ConvGeometry& g_;
  const ActivationParams& activation_;
  const WindowPattern& pattern_;
  bool audit_;
  const TileKernels& kernels_;
  const ConvTensors& t_;
  const float* input_;
  int64_t pixels_, channel_blocks_;
  int64_t bands_per_block_ = 1, band_blocks_ = 1;
};

// Which output columns are samples, for each row of a band of windows (is_sample tiled along the
// width), built once per task so the window rule runs as straight loops over rows. Unavailable for
// planes too wide for its buffer.
class SampleColumns {
 public:
  static constexpr int64_t kMaxWidth = 1024;
  static constexpr int64_t kMaxBytes = 16384;
  SampleColumns(const WindowPattern& pattern, int64_t width);
  bool available() const { return available_; }
  const uint8_t* Row(int64_t i) const { return mask_ + i * width_of_row_; }

 private:
  uint8_t mask_[kMaxBytes];
  int64_t width_of_row_ = 0;
  bool available_ = false;
};

// Applies the window rule to bands [band_begin, band_end) of plane (n, m) of an output whose every
// value is computed, zeroing predicted outputs; returns their prediction counters (audit hits and
// misses come from the values it zeroes).
PredictionCounters PredictComputedBands(const ConvGeometry& geometry, const WindowPattern& pattern,
                                        const SampleColumns& samples, bool audit, float* output, int64_t n, int64_t m,
                                        int64_t band_begin, int64_t band_end);

}  // namespace onnxpred
