// The depthwise path of PredictiveConv: convolutions with one input channel per group (then
// group == C and M = C x multiplier), vectorised along channels. Depthwise windows are per channel
// already, so one task takes a block of `lanes` channels through a range of bands from start to
// finish, in cache: the input rows it reads, transposed from NCHW into a zero-padded
// [rows][padded width][lanes] tile (no whole-tensor layout copy); band by band, the samples of
// every window, then the other outputs of each window where any channel of the block is active
// (the MACs of its inactive channels there are executed and counted; a block with none active
// skips them); then the transpose of its outputs into the NCHW Y. Window 1 predicts nothing: every
// output is computed in raster order and transposed into Y from registers. A task's result does
// not depend on which thread runs it.
#pragma once

#include <cstdint>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

inline bool IsDepthwiseLike(const ConvGeometry& g) { return g.in_channels_per_group() == 1 && g.group > 1; }

// Channel blocks run through "lane channels": lane l = j * C + c is output channel c * multiplier + j
// of input channel c, so a block of consecutive lanes reads consecutive input channels.
// W [M][1][kH][kW] is packed per block as [kH * kW][lanes], lanes past C zero.
PackedFloats PackDepthwiseWeights(const float* weights, const ConvGeometry& geometry, int64_t lanes);

class DepthwiseConv;

// One instruction set's kernel (depthwise_<isa>.cc).
struct DepthwiseKernels {
  const char* name;
  int64_t lanes;
  PredictionCounters (*run_task)(const DepthwiseConv& conv, int64_t task);
};

const DepthwiseKernels& Avx512DepthwiseKernels();
const DepthwiseKernels& Avx2DepthwiseKernels();
const DepthwiseKernels& PortableDepthwiseKernels();

// The kernel of the instruction set `tiles` was chosen for, so ONNXPRED_KERNEL selects both.
const DepthwiseKernels& DepthwiseKernelsFor(const TileKernels& tiles);

// One call's work plan, read by the kernels.
class DepthwiseConv : public ConvCall {
 public:
  // `input` is X (NCHW); `weights` from PackDepthwiseWeights with kernels.lanes.
  DepthwiseConv(const ConvCall& call, const DepthwiseKernels& kernels, const float* input, const float* weights);

  int64_t Tasks() const { return blocks_ * geometry.batch * band_ranges_; }
  PredictionCounters RunTask(int64_t task) const { return kernels.run_task(*this, task); }

  struct Task {
    int64_t n, block, band_begin, band_end;
  };
  Task Decode(int64_t task) const;

  // A pixel of a band of windows: its offsets from the band's first output pixel (in pixels) and
  // from the band's first input row in a task's input tile (in floats), and its window.
  struct BandPixel {
    int64_t output, input, window;
  };
  // The samples and the other pixels of a band, window by window; window w's other pixels are
  // rest[rest_begin[w], rest_begin[w + 1]).
  struct BandPlan {
    std::vector<BandPixel> samples, rest;
    std::vector<int64_t> rest_begin;
    std::vector<int64_t> samples_in_window;
  };
  // Every band has the same plan but a shorter last one.
  const BandPlan& PlanOf(int64_t band) const { return band == bands - 1 ? last_band_ : full_band_; }

  const DepthwiseKernels& kernels;
  const float* const input;
  const float* const weights;
  const int64_t blocks_per_multiplier;  // channel blocks covering C
  const int64_t bands;                  // rows of windows
  const int64_t windows;                // windows per band
  std::vector<int64_t> tap_offsets;     // input tile floats from a pixel's origin to each kernel tap

 private:
  BandPlan MakeBandPlan(int64_t rows) const;

  int64_t blocks_, bands_per_task_, band_ranges_;
  BandPlan full_band_, last_band_;
};

}  // namespace onnxpred
