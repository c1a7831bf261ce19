// The arithmetic of PredictiveConv, free of onnxruntime types: the op file validates shapes
// and attributes, then drives these functions from onnxruntime's intra-op threads.
#pragma once

#include <cstdint>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/packed_floats.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

// W [M][C/group][kH][kW] repacked as [M][kH][kW][C/group], so that each kernel tap's weights are
// contiguous along the channels, matching the NHWC input copy.
PackedFloats PackWeights(const float* weights, const ConvGeometry& geometry);

// Floats between two pixels of the NHWC copy of X: C, or C and one cache line where neighbouring
// outputs would read pixels a multiple of 2 KiB apart (C * stride_w a multiple of 512: 512
// channels, or 256 at stride 2), so that the pixels a tile reads at once do not all fall on the
// same few L1 sets. Nothing reads the pad floats. Measured on ResNet-18's 7x7 layers (512
// channels): window 1 4% faster with the pad, k = 2 12-20%; with 128 and 256 channels at stride 1
// the pad cost 1-4%, so those stay unpadded.
inline int64_t NhwcPixelFloats(const ConvGeometry& g) {
  constexpr int64_t kAliasingFloats = 512, kCacheLineFloats = 16;  // 2 KiB, 64 bytes
  return g.in_channels * g.stride_w % kAliasingFloats == 0 ? g.in_channels + kCacheLineFloats : g.in_channels;
}

// The tensors of one call. `input_nhwc` is the zero-padded NHWC copy of X made by PadToNhwcRow.
struct ConvTensors {
  const float* input_nhwc = nullptr;   // [N][Hp][Wp][NhwcPixelFloats]
  const float* packed_weights = nullptr;
  const float* bias = nullptr;         // [M] or null
  const float* residual = nullptr;     // Z [N][M][oH][oW] or null
  float* output = nullptr;             // Y [N][M][oH][oW]
};

// One call as every path reads it: its geometry, the op's settings and its tensors. The plans of
// the tiled, pointwise and depthwise paths derive from it.
struct ConvCall {
  const ConvGeometry& geometry;
  const ActivationParams& activation;
  const WindowPattern& pattern;
  float margin;  // a window triggers when its pre-activation is <= -margin at every sample
  bool audit;
  bool counting;  // the node's counters output is read
  const ConvTensors& tensors;

  // Whether a path must record where P > -margin: to predict, or only to count zero_diag. Where a
  // pattern predicts nothing and no one reads the counters (a deployed model at window 1), the
  // trigger bits, the window rule and the per-window counting are skipped.
  bool RecordsTriggers() const { return counting || !pattern.SamplesEverything(); }
};

// Written as selects, not early returns, so the compiler emits no data-dependent branch (their
// mispredictions cost as much as the epilogue itself). NaN fails both comparisons and propagates.
// Relu carries clip_max = +inf, so one form serves both activations.
inline float Activate(float v, const ActivationParams& activation) {
  const float positive = v <= 0.f ? 0.f : v;
  return positive > activation.clip_max ? activation.clip_max : positive;
}

// P = sum + B[m] + Z[n, m, row, col], the pre-activation the trigger reads: the epilogue shared
// by every path, in one summation order.
inline float PreActivation(float sum, const ConvGeometry& g, const ConvTensors& t, int64_t n, int64_t m, int64_t row,
                           int64_t col) {
  float v = sum + (t.bias ? t.bias[m] : 0.f);
  if (t.residual) v += t.residual[((n * g.out_channels + m) * g.out_height + row) * g.out_width + col];
  return v;
}

// One output computed on its own: audit mode's check of predicted outputs.
float EvaluateOutput(const ConvGeometry& geometry, const ActivationParams& activation, const ConvTensors& tensors,
                     int64_t n, int64_t m, int64_t row, int64_t col);

// ChannelsToPixelsFn one float at a time (the scalar path's).
void ChannelsToPixels(const float* rows, int64_t channel_stride, int64_t channels, int64_t width, int64_t pixel_stride,
                      float* pixels);

// Writes padded row `row` (0 <= row < N * Hp) of the NHWC copy of `input` (NCHW).
void PadToNhwcRow(const float* input, const ConvGeometry& geometry, int64_t row, float* input_nhwc,
                  ChannelsToPixelsFn channels_to_pixels);

// The per-plane path, used for everything when ONNXPRED_KERNEL=scalar: the simplest correct
// kernel. Computes output plane (n, m): the sampled outputs of every window, then the rest of the
// windows that are not triggered; the others are set to zero without computing them (unless
// `audit`, which computes them only to count hits and misses). Returns this plane's counters.
PredictionCounters ComputePlane(const ConvCall& call, int64_t n, int64_t m);

}  // namespace onnxpred
