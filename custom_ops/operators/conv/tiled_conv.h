// The fast path of PredictiveConv: the sampled outputs of every window as dense register-blocked
// work, then the rest of each window only for the (window, channel) pairs that were not
// triggered, gathered into channel x pixel tiles; a chunk with almost every pair active falls back
// to dense tiles. Work is split into tasks for onnxruntime's intra-op threads; a task's result does
// not depend on which thread runs it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

TapLayout MakeTapLayout(const ConvGeometry& geometry);

// W [M][C/group][kH][kW] packed for dense tiles: per group and block of `block` output channels,
// [kH][runs][run_length][block], with the channels past the group's end zero.
PackedFloats PackDenseWeights(const float* weights, const ConvGeometry& geometry, int64_t block);

class TiledConv : private ConvCall {
 public:
  // `dense_weights` from PackDenseWeights with kernels.dense_channels; `tensors.packed_weights`
  // from PackWeights.
  TiledConv(const ConvCall& call, const TileKernels& kernels, const float* dense_weights);

  // Phase 1: sampled outputs of a range of bands of windows for one block of channels; where the
  // reduction is too short to gather, every output of the bands, then zeros at the other outputs
  // of the (window, channel) pairs the samples trigger.
  int64_t SampleTasks() const { return geometry.batch * sample_ranges_ * geometry.group * blocks_per_group_; }
  PredictionCounters RunSampleTask(int64_t task) const;
  // Phase 2, after every sample task: the other outputs of a range of bands for one chunk of
  // channels, and their counters (none when no trigger is recorded).
  int64_t RestTasks() const {
    return RecordsTriggers() ? geometry.batch * rest_ranges_ * geometry.group * chunks_per_group_ : 0;
  }
  PredictionCounters RunRestTask(int64_t task) const;

 private:
  struct Pixel {
    int64_t row, col, band, window;
  };
  struct Bands {
    int64_t begin, end;
  };
  const float* PixelInput(int64_t n, int64_t group, const Pixel& pixel) const;
  // Which channels of a dense block keep a window active, by a sample above -margin or by having
  // no sample inside the plane (bit j: the block's j-th).
  uint32_t& ActiveLanes(int64_t n, int64_t band, int64_t window, int64_t group, int64_t block_index) const;
  int64_t BlockChannels(int64_t block_index) const;
  // Output rows of a band and columns of a window, clipped at the plane's bottom and right edges.
  int64_t BandRows(int64_t band) const { return std::min(k_, geometry.out_height - band * k_); }
  int64_t WindowColumns(int64_t window) const { return std::min(k_, geometry.out_width - window * k_); }
  int64_t SamplesInWindow(int64_t band, int64_t window) const;
  // The dense-tile weights of one block of channels of a group.
  const float* DenseBlockWeights(int64_t group, int64_t block_index) const;
  // Runs the dense kernel and its epilogue over a tile of one block of channels, then stores it:
  // the samples mark *marks[p], the other outputs keep only the lanes keeps[p] (one is null).
  template <typename Tile>
  void ComputeDenseTile(const Tile& tile, int64_t count, int64_t n, int64_t group, int64_t block_index,
                        uint32_t* const* marks, const uint32_t* keeps, PredictionCounters& counters) const;
  // A tile's pixels by row, for TileKernels::store_row_groups: the samples and rest outputs of a
  // tile's windows lie in a few rows at gaps (each row's in increasing columns).
  TileRowGroups GroupByRows(const Pixel* pixels, const int64_t* offsets, int64_t count) const;
  // Stores `channels` finished channels of `count` pixels (values [pixel][dense_channels]) one float
  // at a time, channel j's to y[j * plane + offsets[p]].
  void StoreTile(const float* values, const int64_t* offsets, int64_t count, int64_t channels, float* y,
                 int64_t plane) const;
  template <typename Visit>
  void ForEachRestPixel(int64_t band, int64_t window, Visit&& visit) const;
  // Zeroes the rest outputs of the pairs a single-pass sample task triggered, counting the hits and
  // misses of their computed values when auditing.
  PredictionCounters ZeroPredictedRest(int64_t n, int64_t group, int64_t block_index, int64_t band_begin,
                                       int64_t band_end) const;
  // Whether gathering the rest outputs of `active_pairs` of `pairs` (window, channel) pairs costs
  // less than dense tiles over all of them.
  bool GatheringPays(int64_t active_pairs, int64_t pairs) const;
  void RunRestDense(int64_t n, Bands bands, int64_t group, int64_t block_begin, int64_t block_end,
                    PredictionCounters& counters, int64_t& computed) const;
  void RunRestGathered(int64_t n, int64_t band, int64_t group, int64_t block_begin, int64_t block_end,
                       PredictionCounters& counters, int64_t& computed) const;

  const TileKernels& kernels_;
  const float* dense_weights_;
  TapLayout taps_;
  int64_t k_, bands_, windows_;
  int64_t blocks_per_group_, chunk_channels_, chunks_per_group_;
  int64_t bands_per_sample_task_ = 1, sample_ranges_ = 1;
  int64_t bands_per_rest_task_ = 1, rest_ranges_ = 1;
  int64_t run_windows_ = 1;  // phase 2: windows in a run, which share their gather tiles
  double short_run_cost_ = 1;  // a gathered output's cost on this map against one in full runs
  bool blocks_inner_ = false;  // sample tasks: blocks vary fastest (see kBlocksInnerWeightBytes)
  // The reduction is too short to gather the rest outputs: the sample tasks compute every output
  // in one pass and zero the predicted ones; the rest tasks only count.
  bool every_output_in_samples_ = false;
  std::vector<float> block_bias_;  // B (or zeros) per dense block, zero past the group's channels
  std::unique_ptr<uint32_t[]> block_active_;  // ActiveLanes, [N][bands][windows][group][block]; or null
};

}  // namespace onnxpred
