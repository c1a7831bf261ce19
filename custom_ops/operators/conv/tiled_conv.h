// The fast path of PredictiveConv: the sampled outputs of every window as dense register-blocked
// work, then the rest of each window only for the (window, channel) pairs whose samples were not
// all zero, gathered into channel x pixel tiles; a chunk with almost every pair active falls back
// to dense tiles. Work is split into tasks for onnxruntime's intra-op threads; a task's result does
// not depend on which thread runs it.
#pragma once

#include <cstdint>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

TapLayout MakeTapLayout(const ConvGeometry& geometry);

// W [M][C/group][kH][kW] packed for dense tiles: per group and block of `block` output channels,
// [kH][runs][run_length][block], with the channels past the group's end zero.
std::vector<float> PackDenseWeights(const float* weights, const ConvGeometry& geometry, int64_t block);

class TiledConv {
 public:
  // `dense_weights` from PackDenseWeights with kernels.dense_channels; `tensors.packed_weights`
  // from PackWeights; `window_active` holds N * bands * windows-per-band * M bytes, which the
  // sample tasks clear before marking.
  TiledConv(const ConvGeometry& geometry, const ActivationParams& activation, const WindowPattern& pattern,
            bool audit, const TileKernels& kernels, const ConvTensors& tensors, const float* dense_weights,
            uint8_t* window_active);

  static int64_t WindowActiveSize(const ConvGeometry& geometry, const WindowPattern& pattern);

  // Phase 1: sampled outputs of a range of bands of windows for one block of channels.
  int64_t SampleTasks() const { return g_.batch * sample_ranges_ * g_.group * blocks_per_group_; }
  PredictionCounters RunSampleTask(int64_t task) const;
  // Phase 2, after every sample task: the other outputs of a band for one chunk of channels.
  int64_t RestTasks() const { return batch_bands_ * g_.group * chunks_per_group_; }
  PredictionCounters RunRestTask(int64_t task) const;

 private:
  struct Pixel {
    int64_t row, col, band, window;
  };
  const float* PixelInput(int64_t n, int64_t group, const Pixel& pixel) const;
  uint8_t& Active(int64_t n, int64_t band, int64_t window, int64_t m) const;
  int64_t SamplesInWindow(int64_t band, int64_t window) const;
  // The dense-tile weights of one block of channels of a group.
  const float* DenseBlockWeights(int64_t group, int64_t block_index) const;
  // Runs the dense kernel over a tile of one channel block and, for its first `count` pixels,
  // finishes the values, hands them to `adjust(values, pixel)` (mark activity, or zero predicted
  // outputs) and stores them.
  template <typename Tile, typename Adjust>
  void ComputeDenseTile(const Tile& tile, int64_t count, const float* weights, int64_t n, int64_t m0, int64_t valid,
                        Adjust&& adjust) const;
  // act(sum + B + Z) for `count` consecutive channels from m0 at one pixel, in place.
  void FinishChannels(float* values, int64_t n, int64_t m0, int64_t count, const Pixel& px) const;
  // Stores `channels` finished channels of `count` pixels (values [pixel][dense_channels]).
  void StoreTile(const float* values, const Pixel* pixels, int64_t count, int64_t n, int64_t m0,
                 int64_t channels) const;
  template <typename Visit>
  void ForEachRestPixel(int64_t band, int64_t window, Visit&& visit) const;
  void RunRestDense(int64_t n, int64_t band, int64_t group, int64_t m_begin, int64_t m_end,
                    PredictionCounters& counters, int64_t& computed) const;
  void RunRestGathered(int64_t n, int64_t band, int64_t group, int64_t m_begin, int64_t m_end,
                       PredictionCounters& counters, int64_t& computed) const;

  const ConvGeometry& g_;
  const ActivationParams& activation_;
  const WindowPattern& pattern_;
  bool audit_;
  const TileKernels& kernels_;
  const ConvTensors& t_;
  const float* dense_weights_;
  uint8_t* window_active_;
  TapLayout taps_;
  int64_t k_, bands_, windows_, batch_bands_;
  int64_t blocks_per_group_, chunks_per_group_;
  int64_t bands_per_sample_task_ = 1, sample_ranges_ = 1;
  bool blocks_inner_ = false;  // sample tasks: blocks vary fastest (see kBlocksInnerWeightBytes)
  std::vector<float> zero_bias_;  // stands in for an absent B
};

}  // namespace onnxpred
