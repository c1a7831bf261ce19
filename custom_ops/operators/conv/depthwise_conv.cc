#include "operators/conv/depthwise_conv.h"

#include <algorithm>

namespace onnxpred {
namespace {

// A task's input tile holds about this many floats: small enough to stay in L2 while the task
// works on it band by band, large enough that its channel rows are long streams for the hardware
// prefetchers and that the kernel rows neighbouring tasks copy again stay few.
constexpr int64_t kTaskInputFloats = 32768;

}  // namespace

PackedFloats PackDepthwiseWeights(const float* weights, const ConvGeometry& g, int64_t lanes) {
  const int64_t channels = g.in_channels, multiplier = g.out_channels_per_group();
  const int64_t taps = g.kernel_h * g.kernel_w, blocks_per_multiplier = CeilDiv(channels, lanes);
  PackedFloats packed(static_cast<size_t>(multiplier * blocks_per_multiplier * taps * lanes), 0.f);
  for (int64_t j = 0; j < multiplier; ++j)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t block = j * blocks_per_multiplier + c / lanes;
      const float* source = weights + (c * multiplier + j) * taps;
      float* block_weights = packed.data() + block * taps * lanes + c % lanes;
      for (int64_t tap = 0; tap < taps; ++tap) block_weights[tap * lanes] = source[tap];
    }
  return packed;
}

const DepthwiseKernels& DepthwiseKernelsFor(const TileKernels& tiles) {
#if defined(ONNXPRED_X86_TILES)
  if (&tiles == &Avx512TileKernels()) return Avx512DepthwiseKernels();
  if (&tiles == &Avx2TileKernels()) return Avx2DepthwiseKernels();
#endif
  return PortableDepthwiseKernels();
}

DepthwiseConv::DepthwiseConv(const ConvCall& call, const DepthwiseKernels& kernels, const float* input,
                             const float* weights)
    : ConvCall(call),
      kernels(kernels),
      input(input),
      weights(weights),
      blocks_per_multiplier(CeilDiv(geometry.in_channels, kernels.lanes)),
      bands(CeilDiv(geometry.out_height, pattern.size)),
      windows(CeilDiv(geometry.out_width, pattern.size)) {
  const int64_t padded_width = geometry.padded_width();
  for (int64_t kh = 0; kh < geometry.kernel_h; ++kh)
    for (int64_t kw = 0; kw < geometry.kernel_w; ++kw)
      tap_offsets.push_back((kh * geometry.dilation_h * padded_width + kw * geometry.dilation_w) * kernels.lanes);
  blocks_ = geometry.out_channels_per_group() * blocks_per_multiplier;
  const int64_t extent_h = geometry.dilation_h * (geometry.kernel_h - 1) + 1;
  const int64_t input_rows = kTaskInputFloats / (padded_width * kernels.lanes);
  const int64_t output_rows = std::max<int64_t>(0, input_rows - extent_h) / geometry.stride_h + 1;
  bands_per_task_ = std::clamp<int64_t>(output_rows / pattern.size, 1, bands);
  band_ranges_ = CeilDiv(bands, bands_per_task_);
  full_band_ = MakeBandPlan(std::min(pattern.size, geometry.out_height));
  last_band_ = MakeBandPlan(geometry.out_height - (bands - 1) * pattern.size);
}

DepthwiseConv::BandPlan DepthwiseConv::MakeBandPlan(int64_t rows) const {
  const int64_t k = pattern.size, width = geometry.out_width;
  auto pixel = [&](int64_t i, int64_t col, int64_t window) {
    const int64_t input = (i * geometry.stride_h * geometry.padded_width() + col * geometry.stride_w) * kernels.lanes;
    return BandPixel{i * width + col, input, window};
  };
  BandPlan plan;
  for (int64_t window = 0; window < windows; ++window) {
    const int64_t c0 = window * k, cols = std::min(k, width - c0);
    int64_t samples = 0;
    for (size_t s = 0; s < pattern.sample_rows.size(); ++s) {
      if (pattern.sample_rows[s] >= rows || pattern.sample_cols[s] >= cols) continue;
      plan.samples.push_back(pixel(pattern.sample_rows[s], c0 + pattern.sample_cols[s], window));
      ++samples;
    }
    plan.samples_in_window.push_back(samples);
    plan.rest_begin.push_back(static_cast<int64_t>(plan.rest.size()));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        if (!pattern.is_sample[static_cast<size_t>(i * k + j)]) plan.rest.push_back(pixel(i, c0 + j, window));
  }
  plan.rest_begin.push_back(static_cast<int64_t>(plan.rest.size()));
  return plan;
}

DepthwiseConv::Task DepthwiseConv::Decode(int64_t task) const {
  // Band ranges vary fastest: consecutive tasks continue the same channel rows of X and Y.
  const int64_t range = task % band_ranges_, n = task / band_ranges_ % geometry.batch;
  const int64_t band_begin = range * bands_per_task_;
  return Task{n, task / band_ranges_ / geometry.batch, band_begin, std::min(bands, band_begin + bands_per_task_)};
}

}  // namespace onnxpred
