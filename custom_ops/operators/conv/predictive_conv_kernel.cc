#include "operators/conv/predictive_conv_kernel.h"

#include <algorithm>

namespace onnxpred {
namespace {

// A dot product with eight independent partial sums, so the compiler vectorises it without
// reassociating floating-point adds itself. The order is fixed, so every output is computed the
// same way on every path and every thread count.
inline float Dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] += a[i + j] * b[i + j];
  }
  float sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Computes conv + bias + Z, and its activation, at one output position.
class OutputEvaluator {
 public:
  OutputEvaluator(const ConvGeometry& g, const ActivationParams& activation, const ConvTensors& t,
                  int64_t n, int64_t m)
      : g_(g), activation_(activation), t_(t), n_(n), m_(m) {
    const int64_t cg = g.in_channels_per_group();
    padded_width_ = g.padded_width();
    const int64_t group_index = m / g.out_channels_per_group();
    pixel_floats_ = NhwcPixelFloats(g);
    image_ = t.input_nhwc + n * g.padded_height() * padded_width_ * pixel_floats_ + group_index * cg;
    weights_ = t.packed_weights + m * g.macs_per_output();
    // Without dilation, groups or a pad between pixels, a kernel row's taps are adjacent in NHWC:
    // one dot per row.
    contiguous_rows_ = g.dilation_w == 1 && g.group == 1 && pixel_floats_ == g.in_channels;
  }

  float operator()(int64_t row, int64_t col) const { return Activate(PreActivationAt(row, col), activation_); }

  float PreActivationAt(int64_t row, int64_t col) const {
    const int64_t c = pixel_floats_, cg = g_.in_channels_per_group();
    const float* origin = image_ + (row * g_.stride_h * padded_width_ + col * g_.stride_w) * c;
    float acc = 0.f;
    const float* w = weights_;
    for (int64_t kh = 0; kh < g_.kernel_h; ++kh) {
      const float* x_row = origin + kh * g_.dilation_h * padded_width_ * c;
      if (contiguous_rows_) {
        acc += Dot(w, x_row, g_.kernel_w * cg);
        w += g_.kernel_w * cg;
        continue;
      }
      for (int64_t kw = 0; kw < g_.kernel_w; ++kw) {
        acc += Dot(w, x_row + kw * g_.dilation_w * c, cg);
        w += cg;
      }
    }
    return PreActivation(acc, g_, t_, n_, m_, row, col);
  }

 private:
  const ConvGeometry& g_;
  const ActivationParams& activation_;
  const ConvTensors& t_;
  int64_t n_, m_;
  int64_t padded_width_ = 0, pixel_floats_ = 0;
  const float* image_ = nullptr;
  const float* weights_ = nullptr;
  bool contiguous_rows_ = false;
};

}  // namespace

float EvaluateOutput(const ConvGeometry& g, const ActivationParams& activation, const ConvTensors& t, int64_t n,
                     int64_t m, int64_t row, int64_t col) {
  return OutputEvaluator(g, activation, t, n, m)(row, col);
}

PackedFloats PackWeights(const float* weights, const ConvGeometry& g) {
  const int64_t m_count = g.out_channels, cg = g.in_channels_per_group();
  const int64_t kh_count = g.kernel_h, kw_count = g.kernel_w;
  PackedFloats packed(static_cast<size_t>(m_count * cg * kh_count * kw_count));
  for (int64_t m = 0; m < m_count; ++m)
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t kh = 0; kh < kh_count; ++kh)
        for (int64_t kw = 0; kw < kw_count; ++kw)
          packed[static_cast<size_t>(((m * kh_count + kh) * kw_count + kw) * cg + c)] =
              weights[((m * cg + c) * kh_count + kh) * kw_count + kw];
  return packed;
}

void ChannelsToPixels(const float* rows, int64_t channel_stride, int64_t channels, int64_t width, int64_t pixel_stride,
                      float* pixels) {
  // Blocks of channels: each pixel's writes stay contiguous while the reads walk a few rows.
  constexpr int64_t kChannelBlock = 16;
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t c1 = std::min(channels, c0 + kChannelBlock);
    for (int64_t w = 0; w < width; ++w)
      for (int64_t c = c0; c < c1; ++c) pixels[w * pixel_stride + c] = rows[c * channel_stride + w];
  }
}

void PadToNhwcRow(const float* input, const ConvGeometry& g, int64_t row, float* input_nhwc,
                  ChannelsToPixelsFn channels_to_pixels) {
  const int64_t hp = g.padded_height(), wp = g.padded_width(), c_count = g.in_channels;
  const int64_t pixel = NhwcPixelFloats(g);
  const int64_t n = row / hp, h = row % hp - g.pad_top;
  float* out = input_nhwc + row * wp * pixel;
  if (h < 0 || h >= g.in_height) {
    std::fill(out, out + wp * pixel, 0.f);
    return;
  }
  std::fill(out, out + g.pad_left * pixel, 0.f);
  std::fill(out + (g.pad_left + g.in_width) * pixel, out + wp * pixel, 0.f);
  channels_to_pixels(input + (n * c_count * g.in_height + h) * g.in_width, g.in_height * g.in_width, c_count,
                     g.in_width, pixel, out + g.pad_left * pixel);
}

PredictionCounters ComputePlane(const ConvCall& call, int64_t n, int64_t m) {
  const ConvGeometry& g = call.geometry;
  const WindowPattern& pattern = call.pattern;
  const ConvTensors& t = call.tensors;
  const OutputEvaluator evaluate(g, call.activation, t, n, m);
  const float threshold = -call.margin;
  const int64_t k = pattern.size, height = g.out_height, width = g.out_width;
  float* plane = t.output + (n * g.out_channels + m) * height * width;
  PredictionCounters counters;
  int64_t computed = 0;

  for (int64_t r0 = 0; r0 < height; r0 += k) {
    const int64_t rows = std::min(k, height - r0);
    for (int64_t c0 = 0; c0 < width; c0 += k) {
      const int64_t cols = std::min(k, width - c0);
      int64_t samples = 0;
      bool triggered = true;
      for (size_t s = 0; s < pattern.sample_rows.size(); ++s) {
        const int64_t i = pattern.sample_rows[s], j = pattern.sample_cols[s];
        if (i >= rows || j >= cols) continue;
        const float p = evaluate.PreActivationAt(r0 + i, c0 + j);
        plane[(r0 + i) * width + c0 + j] = Activate(p, call.activation);
        triggered = triggered && p <= threshold;  // NaN never triggers
        ++samples;
      }
      triggered = triggered && samples > 0;  // a window with no sample inside the plane is never predicted
      computed += samples;
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          if (pattern.is_sample[static_cast<size_t>(i * k + j)]) continue;
          float& out = plane[(r0 + i) * width + c0 + j];
          if (!triggered) {
            out = evaluate(r0 + i, c0 + j);
            ++computed;
            continue;
          }
          out = 0.f;
          ++counters.predicted;
          if (call.audit) ++(evaluate(r0 + i, c0 + j) == 0.f ? counters.pred_hit : counters.pred_miss);
        }
      }
      if (triggered) counters.zero_diag += samples;
    }
  }
  counters.macs_executed = computed * g.macs_per_output();
  return counters;
}

}  // namespace onnxpred
