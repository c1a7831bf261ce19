// Shapes and attributes of one PredictiveConv call, already validated.
#pragma once

#include <cstdint>
#include <limits>

namespace onnxpred {

enum class Activation { kRelu, kClip };

// a / b rounded up, for positive b: windows in a row, blocks of channels, vectors of a row.
inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct ConvGeometry {
  int64_t batch = 0, in_channels = 0, in_height = 0, in_width = 0;
  int64_t out_channels = 0, out_height = 0, out_width = 0;
  int64_t group = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;

  int64_t in_channels_per_group() const { return in_channels / group; }
  int64_t out_channels_per_group() const { return out_channels / group; }
  int64_t padded_height() const { return in_height + pad_top + pad_bottom; }
  int64_t padded_width() const { return in_width + pad_left + pad_right; }
  // Multiply-accumulates per output value: (C / group) * kH * kW.
  int64_t macs_per_output() const { return in_channels_per_group() * kernel_h * kernel_w; }
};

struct ActivationParams {
  Activation kind = Activation::kRelu;
  float clip_max = std::numeric_limits<float>::infinity();
};

// Summed over a call; the layout of the op's `counters` output.
struct PredictionCounters {
  int64_t outputs = 0;
  int64_t zero_diag = 0;
  int64_t predicted = 0;
  int64_t pred_hit = 0;
  int64_t pred_miss = 0;
  int64_t macs_dense = 0;
  int64_t macs_executed = 0;

  PredictionCounters& operator+=(const PredictionCounters& o) {
    outputs += o.outputs;
    zero_diag += o.zero_diag;
    predicted += o.predicted;
    pred_hit += o.pred_hit;
    pred_miss += o.pred_miss;
    macs_dense += o.macs_dense;
    macs_executed += o.macs_executed;
    return *this;
  }
};

}  // namespace onnxpred
