// The depthwise kernel, written once against an instruction set (simd.h plus the few operations
// below) and instantiated by each depthwise_<isa>.cc. Everything here has internal linkage, so the
// instantiations of different units never merge.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "operators/conv/depthwise_conv.h"
#include "operators/conv/simd.h"
#include "operators/conv/transpose_blocks.h"

namespace onnxpred {
namespace {

// Beyond simd.h: Slice(v, s) is lanes [s * kBlock, (s + 1) * kBlock) of v.
#if defined(__AVX512F__)
struct DepthwiseIsa : Avx512 {
  static Block Slice(V v, int s) {
    return s ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) : _mm512_castps512_ps256(v);
  }
};
#elif defined(__AVX2__)
struct DepthwiseIsa : Avx2 {
  static Block Slice(V v, int) { return v; }
};
#else
struct DepthwiseIsa : Portable {
  static Block Slice(V v, int) { return v; }
};
#endif

// Pixels computed together, a whole number of transpose blocks.
constexpr int kTilePixels = 8;
static_assert(kTilePixels % kBlock == 0, "whole transpose blocks");

// rows[t][offset + i] = vectors[i][t] for i < count <= kTilePixels, t < valid.
template <typename Isa>
void StoreToRows(const typename Isa::V* vectors, int64_t count, int64_t valid, float* const* rows, int64_t offset) {
  if (count == kTilePixels) {
    for (int p0 = 0; p0 < kTilePixels; p0 += kBlock) {
      for (int64_t t0 = 0; t0 < valid; t0 += kBlock) {
        Block r[kBlock];
        float* shifted[kBlock];
        for (int i = 0; i < kBlock; ++i) {
          r[i] = Isa::Slice(vectors[p0 + i], static_cast<int>(t0 / kBlock));
          shifted[i] = t0 + i < valid ? rows[t0 + i] + offset + p0 : nullptr;
        }
        StoreTransposed(r, std::min<int64_t>(kBlock, valid - t0), shifted);
      }
    }
    return;
  }
  alignas(64) float lanes[Isa::kLanes];
  for (int64_t i = 0; i < count; ++i) {
    Isa::Store(lanes, vectors[i]);
    for (int64_t t = 0; t < valid; ++t) rows[t][offset + i] = lanes[t];
  }
}

// Channel rows of `pixels` floats into pixel-major vectors of channels, `width` pixels to an output
// row of `out_row_stride` floats: pixel q's vector starts at out + (q / width) * out_row_stride +
// (q % width) * kLanes and holds rows[t][q] in lane t < valid, zero above.
template <int kLanes>
void TransposeFromRows(const float* const* rows, int64_t valid, int64_t pixels, int64_t width,
                       int64_t out_row_stride, float* out) {
  static_assert(kLanes % kBlock == 0, "whole blocks of lanes");
  float* out_row = out;
  int64_t col = 0;
  auto next_vector = [&] {
    float* vector = out_row + col * kLanes;
    if (++col == width) {
      col = 0;
      out_row += out_row_stride;
    }
    return vector;
  };
  int64_t q = 0;
  for (; q + kBlock <= pixels; q += kBlock) {
    float* vectors[kBlock];
    for (int i = 0; i < kBlock; ++i) vectors[i] = next_vector();
    for (int64_t t0 = 0; t0 < kLanes; t0 += kBlock) {
      Block r[kBlock];
      for (int64_t i = 0; i < kBlock; ++i) {
        r[i] = t0 + i < valid ? TransposeBlocks::Load(rows[t0 + i] + q) : TransposeBlocks::Zero();
      }
      TransposeBlocks::Transpose(r);
      for (int i = 0; i < kBlock; ++i) TransposeBlocks::Store(vectors[i] + t0, r[i]);
    }
  }
  for (; q < pixels; ++q) {
    float* vector = next_vector();
    for (int64_t t = 0; t < kLanes; ++t) vector[t] = t < valid ? rows[t][q] : 0.f;
  }
}

// A buffer reused by a thread's tasks: buffers allocated per task would be handed back to the
// system and page-faulted in again on every task once they pass glibc's trim threshold. Its data
// is aligned to a cache line, so that no vector load straddles two.
class TaskBuffer {
 public:
  float* Get(int64_t floats) {
    constexpr size_t kAlignFloats = 64 / sizeof(float);
    if (storage_.size() < static_cast<size_t>(floats) + kAlignFloats) storage_.resize(floats + kAlignFloats);
    const auto address = reinterpret_cast<uintptr_t>(storage_.data());
    return storage_.data() + (-address / sizeof(float)) % kAlignFloats;
  }

 private:
  std::vector<float> storage_;
};

struct TaskBuffers {
  TaskBuffer weights, input, outputs;
  std::vector<uint32_t> masks;
};
inline TaskBuffers& ThreadTaskBuffers() {
  thread_local TaskBuffers buffers;
  return buffers;
}

// One task of DepthwiseConv: a block of kLanes lane channels over a range of bands of one image.
template <typename Isa>
class DepthwiseTask {
  using V = typename Isa::V;
  using BandPixel = DepthwiseConv::BandPixel;
  static constexpr int kLanes = Isa::kLanes;

  // A band of windows: its plan, first input row in the tile and first pixel in the task's rows.
  struct Band {
    const DepthwiseConv::BandPlan& plan;
    const float* input;
    int64_t first_pixel;
  };

 public:
  DepthwiseTask(const DepthwiseConv& conv, int64_t task_index)
      : conv_(conv), g_(conv.geometry), task_(conv.Decode(task_index)) {
    const int64_t multiplier = g_.out_channels_per_group(), plane = g_.out_height * g_.out_width;
    const int64_t j = task_.block / conv.blocks_per_multiplier;
    const int64_t c0 = task_.block % conv.blocks_per_multiplier * kLanes;
    valid_ = std::min<int64_t>(kLanes, g_.in_channels - c0);
    valid_lanes_ = (uint32_t{1} << valid_) - 1;
    const int64_t row_begin = task_.band_begin * conv.pattern.size;
    const int64_t rows = std::min(g_.out_height, task_.band_end * conv.pattern.size) - row_begin;
    pixels_ = rows * g_.out_width;
    const ConvTensors& t = conv.tensors;
    float bias[kLanes] = {};
    for (int64_t lane = 0; lane < valid_; ++lane) {
      const int64_t m = (c0 + lane) * multiplier + j;
      const int64_t offset = (task_.n * g_.out_channels + m) * plane + row_begin * g_.out_width;
      out_rows_[lane] = t.output + offset;
      residual_rows_[lane] = t.residual ? t.residual + offset : nullptr;
      bias[lane] = t.bias ? t.bias[m] : 0.f;
    }
    bias_ = Isa::Load(bias);
    clip_max_ = Isa::Broadcast(&conv.activation.clip_max);
    const float threshold = -conv.margin;
    threshold_ = Isa::Broadcast(&threshold);
    const int64_t block_weights = static_cast<int64_t>(conv.tap_offsets.size()) * kLanes;
    weights_ = buffers_.weights.Get(block_weights);
    std::copy_n(conv.weights + task_.block * block_weights, block_weights, weights_);
    CopyInput(c0, row_begin * g_.stride_h, (rows - 1) * g_.stride_h + g_.dilation_h * (g_.kernel_h - 1) + 1);
  }

  PredictionCounters Run() {
    if (conv_.pattern.size == 1) return ComputeEveryOutput();
    // Band by band, so that the band's input rows stay in L1 through both phases.
    const int64_t k = conv_.pattern.size;
    outputs_ = buffers_.outputs.Get(pixels_ * kLanes);
    buffers_.masks.resize(std::max(buffers_.masks.size(), static_cast<size_t>(conv_.windows)));
    masks_ = buffers_.masks.data();
    PredictionCounters counters;
    int64_t computed = 0;
    for (int64_t band = task_.band_begin; band < task_.band_end; ++band) {
      const int64_t index = band - task_.band_begin;
      const Band current{conv_.PlanOf(band), input_ + index * k * g_.stride_h * g_.padded_width() * kLanes,
                         index * k * g_.out_width};
      ComputeSamples(current);
      computed += ComputeRest(current, counters);
    }
    TransposeToRows<kLanes>(outputs_, pixels_, valid_, out_rows_);
    counters.macs_executed = computed * static_cast<int64_t>(conv_.tap_offsets.size());
    return counters;
  }

 private:
  // Padded input rows [first_row, first_row + rows) of channels c0.. of the image into input_ as
  // [rows][padded width][kLanes], zero in the padding and past the last channel.
  void CopyInput(int64_t c0, int64_t first_row, int64_t rows) {
    const int64_t row_floats = g_.padded_width() * kLanes, plane = g_.in_height * g_.in_width;
    input_ = buffers_.input.Get(rows * row_floats);
    // Rows [inside_begin, inside_end) of the tile hold image rows; the others are padding.
    const int64_t inside_begin = std::clamp<int64_t>(g_.pad_top - first_row, 0, rows);
    const int64_t inside_end = std::clamp<int64_t>(g_.pad_top + g_.in_height - first_row, inside_begin, rows);
    std::fill(input_, input_ + inside_begin * row_floats, 0.f);
    std::fill(input_ + inside_end * row_floats, input_ + rows * row_floats, 0.f);
    for (int64_t r = inside_begin; r < inside_end; ++r) {
      float* row = input_ + r * row_floats;
      std::fill(row, row + g_.pad_left * kLanes, 0.f);
      std::fill(row + (g_.pad_left + g_.in_width) * kLanes, row + row_floats, 0.f);
    }
    if (inside_begin == inside_end) return;
    // The image rows are contiguous in each channel plane: one transpose covers them all.
    const float* image = conv_.input + (task_.n * g_.in_channels + c0) * plane +
                         (first_row + inside_begin - g_.pad_top) * g_.in_width;
    const float* channel_rows[kLanes];
    for (int64_t lane = 0; lane < valid_; ++lane) channel_rows[lane] = image + lane * plane;
    TransposeFromRows<kLanes>(channel_rows, valid_, (inside_end - inside_begin) * g_.in_width, g_.in_width,
                              row_floats, input_ + inside_begin * row_floats + g_.pad_left * kLanes);
  }

  // Window 1 predicts nothing: every output is its window's only sample, computed in raster order
  // and transposed into Y from registers.
  PredictionCounters ComputeEveryOutput() {
    PredictionCounters counters;
    const int64_t pixel_step = g_.stride_w * kLanes, row_step = g_.stride_h * g_.padded_width() * kLanes;
    const float* row_input = input_;
    int64_t col = 0;
    for (int64_t first = 0; first < pixels_; first += kTilePixels) {
      const int count = static_cast<int>(std::min<int64_t>(kTilePixels, pixels_ - first));
      const float* inputs[kTilePixels];
      for (int p = 0; p < count; ++p) {
        inputs[p] = row_input + col * pixel_step;
        if (++col == g_.out_width) {
          col = 0;
          row_input += row_step;
        }
      }
      V values[kTilePixels];
      Accumulate(inputs, count, values);
      for (int p = 0; p < count; ++p) {
        const V pre = PreActivation(values[p], first + p);
        counters.zero_diag += Isa::CountLanes(valid_lanes_ & ~Isa::AboveLanes(pre, threshold_));
        values[p] = Isa::Activate(pre, clip_max_);
      }
      StoreToRows<Isa>(values, count, valid_, out_rows_, first);
    }
    counters.macs_executed = pixels_ * valid_ * static_cast<int64_t>(conv_.tap_offsets.size());
    return counters;
  }

  // Samples of every window of the band: finished values, and the lanes where each window is active
  // (a sample above -margin; every lane of a window with no sample inside the plane).
  void ComputeSamples(const Band& band) {
    for (int64_t window = 0; window < conv_.windows; ++window) {
      masks_[window] = band.plan.samples_in_window[static_cast<size_t>(window)] > 0 ? 0u : valid_lanes_;
    }
    const auto& samples = band.plan.samples;
    ComputePixels(band, samples.data(), samples.data() + samples.size(), [&](const BandPixel& pixel, V sum) {
      const int64_t q = band.first_pixel + pixel.output;
      const V pre = PreActivation(sum, q);
      masks_[pixel.window] |= Isa::AboveLanes(pre, threshold_);
      Isa::Store(outputs_ + q * kLanes, Isa::Activate(pre, clip_max_));
    });
  }

  // The other outputs of each window of the band: computed where any lane of the block is active
  // (or to audit predictions), zero in the lanes where it is not. Returns the outputs computed for Y.
  int64_t ComputeRest(const Band& band, PredictionCounters& counters) {
    auto finish = [&](const BandPixel& pixel, V sum) {
      const int64_t q = band.first_pixel + pixel.output;
      const V v = Isa::Activate(PreActivation(sum, q), clip_max_);
      const uint32_t active = masks_[pixel.window] & valid_lanes_;
      if (audit_) {
        const uint32_t predicted = valid_lanes_ & ~active, zero = Isa::ZeroLanes(v);
        counters.pred_hit += Isa::CountLanes(predicted & zero);
        counters.pred_miss += Isa::CountLanes(predicted & ~zero);
      }
      Isa::Store(outputs_ + q * kLanes, Isa::KeepLanes(active, v));
    };
    const DepthwiseConv::BandPlan& plan = band.plan;
    const BandPixel* rest = plan.rest.data();
    int64_t computed = 0;
    int64_t pending = 0;  // rest[pending, ...) belong to windows still to compute, in one run
    for (size_t window = 0; window < plan.samples_in_window.size(); ++window) {
      const int64_t samples = plan.samples_in_window[window];
      const int64_t rest_begin = plan.rest_begin[window], rest_end = plan.rest_begin[window + 1];
      const uint32_t active = masks_[window] & valid_lanes_;
      const int64_t predicted_lanes = valid_ - Isa::CountLanes(active);
      counters.zero_diag += predicted_lanes * samples;
      counters.predicted += predicted_lanes * (rest_end - rest_begin);
      computed += (samples + (active ? rest_end - rest_begin : 0)) * valid_;
      if (active || audit_) continue;
      ComputePixels(band, rest + pending, rest + rest_begin, finish);
      for (int64_t r = rest_begin; r < rest_end; ++r) {
        Isa::Store(outputs_ + (band.first_pixel + rest[r].output) * kLanes, Isa::Zero());
      }
      pending = rest_end;
    }
    ComputePixels(band, rest + pending, rest + plan.rest.size(), finish);
    return computed;
  }

  // Computes pixels [begin, end) of the band kTilePixels at a time and hands each sum to `finish`.
  template <typename Finish>
  void ComputePixels(const Band& band, const BandPixel* begin, const BandPixel* end, Finish&& finish) {
    for (const BandPixel* first = begin; first < end; first += kTilePixels) {
      const int count = static_cast<int>(std::min<int64_t>(kTilePixels, end - first));
      const float* inputs[kTilePixels];
      for (int p = 0; p < count; ++p) inputs[p] = band.input + first[p].input;
      V sums[kTilePixels];
      Accumulate(inputs, count, sums);
      for (int p = 0; p < count; ++p) finish(first[p], sums[p]);
    }
  }

  // sums[p] = sum over taps of weights[tap] * inputs[p][tap] for p < count, kLanes channels at a
  // time; slots past `count` repeat the last pixel. A tile at most half full (the end of a small
  // map's band) is computed as a half tile. Out of line: inlined into its callers' loops, it left
  // them spilling pixel pointers (window 1 ran 10-15% slower).
  __attribute__((noinline)) void Accumulate(const float** inputs, int count, V* sums) const {
    for (int p = count; p < kTilePixels; ++p) inputs[p] = inputs[count - 1];
    if (count > kTilePixels / 2) {
      AccumulateTile<kTilePixels>(inputs, sums);
    } else {
      AccumulateTile<kTilePixels / 2>(inputs, sums);
    }
  }

  template <int kCount>
  void AccumulateTile(const float* const* inputs, V* sums) const {
    V acc[kCount];
#pragma GCC unroll 16
    for (int p = 0; p < kCount; ++p) acc[p] = Isa::Zero();
    const float* w = weights_;
    for (const int64_t offset : conv_.tap_offsets) {
      const V wv = Isa::Load(w);
      w += kLanes;
#pragma GCC unroll 16
      for (int p = 0; p < kCount; ++p) acc[p] = Isa::Fma(Isa::Load(inputs[p] + offset), wv, acc[p]);
    }
#pragma GCC unroll 16
    for (int p = 0; p < kCount; ++p) sums[p] = acc[p];
  }

  // P = sum + B + Z in PreActivation's order; `q` is the pixel's index in the task's rows.
  V PreActivation(V sum, int64_t q) const {
    V v = Isa::Add(sum, bias_);
    if (has_residual_) {
      alignas(64) float lanes[kLanes];
      Isa::Store(lanes, v);
      for (int64_t lane = 0; lane < valid_; ++lane) lanes[lane] += residual_rows_[lane][q];
      v = Isa::Load(lanes);
    }
    return v;
  }

  const DepthwiseConv& conv_;
  const ConvGeometry& g_;
  const DepthwiseConv::Task task_;
  const bool audit_ = conv_.audit;
  const bool has_residual_ = conv_.tensors.residual != nullptr;
  int64_t valid_ = 0;  // channels of the block that exist
  uint32_t valid_lanes_ = 0;
  int64_t pixels_ = 0;                  // output pixels of the task's rows
  float* out_rows_[kLanes] = {};        // Y and Z of each lane, from the task's first row
  const float* residual_rows_[kLanes] = {};
  V bias_, clip_max_, threshold_;  // threshold_: -margin
  float* weights_ = nullptr;  // the block's, in an aligned copy
  TaskBuffers& buffers_ = ThreadTaskBuffers();
  float* input_ = nullptr;     // [rows][padded width][kLanes] (CopyInput)
  float* outputs_ = nullptr;   // [pixels_][kLanes] finished outputs
  uint32_t* masks_ = nullptr;  // per window of the band: its active lanes (ComputeSamples)
};

template <typename Isa>
PredictionCounters RunDepthwiseTask(const DepthwiseConv& conv, int64_t task) {
  return DepthwiseTask<Isa>(conv, task).Run();
}

}  // namespace
}  // namespace onnxpred
