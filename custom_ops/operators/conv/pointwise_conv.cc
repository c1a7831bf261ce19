#include "operators/conv/pointwise_conv.h"

#include <algorithm>

namespace onnxpred {
namespace {

// A task's pixels: whole bands of windows covering at least a few tiles, whose input columns
// (C x tile width) stay in L2 while the task's channel tiles pass over them.
constexpr int64_t kTilesPerPixelBlock = 4;
constexpr int64_t kTilesPerChannelBlock = 4;
constexpr int64_t kMaxTileOutputs = 4 * 96;
constexpr size_t kMaxListedSamples = 64;
constexpr int64_t kMaxMaskWidth = SampleColumns::kMaxWidth;
constexpr int64_t kMaxMaskBytes = SampleColumns::kMaxBytes;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

bool PointwiseConv::Applies(const ConvGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.group == 1 &&
         g.pad_top == 0 && g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
}

PointwiseConv::PointwiseConv(const ConvGeometry& geometry, const ActivationParams& activation,
                             const WindowPattern& pattern, bool audit, const TileKernels& kernels,
                             const ConvTensors& tensors, const float* input)
    : g_(geometry),
      activation_(activation),
      pattern_(pattern),
      audit_(audit),
      kernels_(kernels),
      t_(tensors),
      input_(input),
      pixels_(geometry.out_height * geometry.out_width),
      channel_blocks_(CeilDiv(geometry.out_channels, kernels.pointwise_channels * kTilesPerChannelBlock)) {
  const int64_t band_pixels = pattern.size * geometry.out_width;
  const int64_t bands = CeilDiv(geometry.out_height, pattern.size);
  bands_per_block_ = std::min(bands, CeilDiv(kernels.pointwise_pixels * kTilesPerPixelBlock, band_pixels));
  band_blocks_ = CeilDiv(bands, bands_per_block_);
}

PredictionCounters PointwiseConv::RunTask(int64_t task) const {
  const int64_t band_block = task % band_blocks_;
  const int64_t channel_block = task / band_blocks_ % channel_blocks_;
  const int64_t n = task / band_blocks_ / channel_blocks_;
  const int64_t tile_channels = kernels_.pointwise_channels, tile_pixels = kernels_.pointwise_pixels;
  const int64_t c_count = g_.in_channels, k = pattern_.size;
  const int64_t m_begin = channel_block * tile_channels * kTilesPerChannelBlock;
  const int64_t m_end = std::min(g_.out_channels, m_begin + tile_channels * kTilesPerChannelBlock);
  const int64_t band_begin = band_block * bands_per_block_, band_end = band_begin + bands_per_block_;
  const int64_t q_begin = band_begin * k * g_.out_width;
  const int64_t q_end = std::min(pixels_, band_end * k * g_.out_width);
  const float* image = input_ + n * c_count * pixels_;
  float sums[kMaxTileOutputs];
  const float* weights[kMaxGatherChannels];
  int64_t computed = 0;

  for (int64_t q0 = q_begin; q0 < q_end; q0 += tile_pixels) {
    const int64_t width = std::min(tile_pixels, q_end - q0);
    for (int64_t m0 = m_begin; m0 < m_end; m0 += tile_channels) {
      const int64_t channels = std::min(tile_channels, m_end - m0);
      // A short last tile repeats its last channel; only real channels are stored and counted.
      for (int64_t i = 0; i < tile_channels; ++i) weights[i] = t_.packed_weights + (m0 + std::min(i, channels - 1)) * c_count;
      const int64_t vectors = CeilDiv(width, kernels_.lanes);
      kernels_.pointwise[vectors - 1](c_count, pixels_, weights, image + q0, width, sums);
      for (int64_t i = 0; i < channels; ++i) {
        const int64_t m = m0 + i;
        const float bias = t_.bias ? t_.bias[m] : 0.f;
        const int64_t offset = (n * g_.out_channels + m) * pixels_ + q0;
        const float* row = sums + i * vectors * kernels_.lanes;
        float* y = t_.output + offset;
        if (t_.residual) {
          const float* z = t_.residual + offset;
          for (int64_t q = 0; q < width; ++q) y[q] = Activate(row[q] + bias + z[q], activation_);
        } else {
          for (int64_t q = 0; q < width; ++q) y[q] = Activate(row[q] + bias, activation_);
        }
      }
      computed += channels * width;
    }
  }
  // The block's outputs are still in cache: apply the window rule to its bands now.
  PredictionCounters counters;
  const SampleColumns samples(pattern_, g_.out_width);
  for (int64_t m = m_begin; m < m_end; ++m)
    counters += PredictComputedBands(g_, pattern_, samples, audit_, t_.output, n, m, band_begin, band_end);
  counters.macs_executed = computed * g_.macs_per_output();
  return counters;
}

SampleColumns::SampleColumns(const WindowPattern& pattern, int64_t width) {
  const int64_t k = pattern.size;
  if (width > kMaxMaskWidth || k * width > kMaxMaskBytes) return;  // too wide: the per-window form serves
  width_of_row_ = width;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t c0 = 0; c0 < width; c0 += k)
      for (int64_t j = 0; j < k && c0 + j < width; ++j)
        mask_[i * width + c0 + j] = pattern.is_sample[static_cast<size_t>(i * k + j)];
  available_ = true;
}

namespace {

// The window rule as straight loops over whole rows: which windows are predicted is data, and as
// branches it cost more than the GEMM before it on short reductions (1.5-2 cycles an output).
PredictionCounters PredictBandsByRows(const ConvGeometry& g, const WindowPattern& pattern, const SampleColumns& samples,
                                      bool audit, float* plane, int64_t band_begin, int64_t band_end) {
  const int64_t k = pattern.size, height = g.out_height, width = g.out_width;
  const int64_t windows = CeilDiv(width, k);
  uint8_t window_active[kMaxMaskWidth];
  uint8_t column_active[kMaxMaskWidth];
  PredictionCounters counters;
  for (int64_t r0 = band_begin * k; r0 < std::min(height, band_end * k); r0 += k) {
    const int64_t rows = std::min(k, height - r0);
    float* band = plane + r0 * width;
    std::fill(window_active, window_active + windows, 0);
    for (size_t s = 0; s < pattern.sample_rows.size(); ++s) {
      const int64_t i = pattern.sample_rows[s], j = pattern.sample_cols[s];
      if (i >= rows) continue;
      const float* row = band + i * width + j;
      for (int64_t w = 0; w * k + j < width; ++w) window_active[w] |= !(row[w * k] == 0.f);  // NaN: non-zero
    }
    for (int64_t w = 0, c = 0; w < windows; ++w)
      for (int64_t j = 0; j < k && c < width; ++j, ++c) column_active[c] = window_active[w];
    int64_t zero_samples = 0, kept = 0, predicted_zero = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const uint8_t* sample = samples.Row(i);
      float* row = band + i * width;
      for (int64_t c = 0; c < width; ++c) {
        const int keep = sample[c] | column_active[c];
        zero_samples += sample[c] & (column_active[c] ^ 1);
        kept += keep;
        predicted_zero += (keep ^ 1) & (row[c] == 0.f);
        row[c] = keep ? row[c] : 0.f;
      }
    }
    counters.zero_diag += zero_samples;
    const int64_t predicted = rows * width - kept;
    counters.predicted += predicted;
    if (audit) {
      counters.pred_hit += predicted_zero;
      counters.pred_miss += predicted - predicted_zero;
    }
  }
  return counters;
}

}  // namespace

PredictionCounters PredictComputedBands(const ConvGeometry& g, const WindowPattern& pattern, const SampleColumns& samples,
                                        bool audit, float* output, int64_t n, int64_t m, int64_t band_begin,
                                        int64_t band_end) {
  const int64_t k = pattern.size, height = g.out_height, width = g.out_width;
  float* plane = output + (n * g.out_channels + m) * height * width;
  const int64_t row_end = std::min(height, band_end * k);
  PredictionCounters counters;
  if (k == 1) {  // every output is its window's only sample: nothing to predict, only zeros to count
    int64_t zeros = 0;
    for (int64_t i = band_begin * width; i < row_end * width; ++i) zeros += plane[i] == 0.f;
    counters.zero_diag = zeros;
    return counters;
  }
  if (samples.available()) return PredictBandsByRows(g, pattern, samples, audit, plane, band_begin, band_end);
  // A predicted window's samples are exactly +0 (Activate returns +0 for v <= 0), so zeroing the
  // whole window leaves them as they are: no per-output test of which positions are samples.
  const int64_t windows = CeilDiv(width, k);
  // Offsets of the samples from a whole window's top-left output (for patterns of few samples).
  const size_t sample_count = pattern.sample_rows.size();
  const bool few_samples = sample_count <= kMaxListedSamples;
  int64_t sample_offsets[kMaxListedSamples];
  for (size_t s = 0; few_samples && s < sample_count; ++s)
    sample_offsets[s] = pattern.sample_rows[s] * width + pattern.sample_cols[s];
  for (int64_t r0 = band_begin * k; r0 < row_end; r0 += k) {
    const int64_t rows = std::min(k, height - r0);
    float* band = plane + r0 * width;
    for (int64_t w = 0; w < windows; ++w) {
      const int64_t c0 = w * k, cols = std::min(k, width - c0);
      bool active = false;
      int64_t samples = 0;
      if (few_samples && rows == k && cols == k) {  // every sample lies inside: no bounds to test
        for (size_t s = 0; s < sample_count; ++s) active |= !(band[c0 + sample_offsets[s]] == 0.f);
        samples = static_cast<int64_t>(sample_count);
      } else {
        for (size_t s = 0; s < pattern.sample_rows.size(); ++s) {
          const int64_t i = pattern.sample_rows[s], j = pattern.sample_cols[s];
          if (i >= rows || j >= cols) continue;
          active |= !(band[i * width + c0 + j] == 0.f);  // NaN: non-zero
          ++samples;
        }
      }
      if (active) continue;
      const int64_t predicted = rows * cols - samples;
      counters.zero_diag += samples;
      counters.predicted += predicted;
      int64_t misses = 0;
      for (int64_t i = 0; i < rows; ++i) {
        float* segment = band + i * width + c0;
        if (audit) {
          for (int64_t j = 0; j < cols; ++j) misses += !(segment[j] == 0.f);
        }
        for (int64_t j = 0; j < cols; ++j) segment[j] = 0.f;  // a few floats: a call to memset costs more
      }
      if (audit) {
        counters.pred_miss += misses;
        counters.pred_hit += predicted - misses;
      }
    }
  }
  return counters;
}

}  // namespace onnxpred
