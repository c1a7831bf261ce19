// The window rule on a band of k computed output rows, as whole-row loops over 32-bit lanes: which
// windows are predicted is data (masks built once per call), so the compiler vectorises every loop
// at the width of the unit that includes this file. Included by each tiles_<isa>.cc.
#pragma once

#include <algorithm>
#include <cstdint>

#include "operators/conv/tile_kernels.h"

namespace onnxpred {
namespace {

// band[i * width + c] for i < rows (rows <= k): zeroes the predicted outputs, returns their counters.
// A column's window is active when any of its window's samples in this band is non-zero (NaN
// counts as non-zero); every output of an inactive window that is not a sample is predicted.
PredictionCounters ApplyBandRule(const BandRuleMasks& masks, float* band, int64_t rows, bool audit,
                                 int32_t* scratch) {
  const int64_t k = masks.window, width = masks.width, reach = k - 1;
  int32_t* __restrict sample_nonzero = scratch + reach;  // [-reach, width + reach), zero outside
  int32_t* __restrict active = scratch + width + 2 * reach;
  std::fill(scratch, scratch + width + 2 * reach, 0);
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t* __restrict sample = masks.sample_row(i);
    const float* __restrict row = band + i * width;
    for (int64_t c = 0; c < width; ++c) sample_nonzero[c] |= sample[c] & -static_cast<int32_t>(!(row[c] == 0.f));
  }
  std::fill(active, active + width, 0);
  for (int64_t d = -reach; d <= reach; ++d) {  // OR over the columns of each window
    const int32_t* __restrict same = masks.same_window(d);
    const int32_t* __restrict shifted = sample_nonzero + d;
    for (int64_t c = 0; c < width; ++c) active[c] |= shifted[c] & same[c];
  }
  PredictionCounters counters;
  int64_t kept = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t* __restrict sample = masks.sample_row(i);
    float* __restrict row = band + i * width;
    int32_t row_kept = 0, row_zero_samples = 0, row_predicted_zero = 0;
    if (audit) {
      for (int64_t c = 0; c < width; ++c)
        row_predicted_zero += ~(sample[c] | active[c]) & -static_cast<int32_t>(row[c] == 0.f) & 1;
    }
    for (int64_t c = 0; c < width; ++c) {
      const int32_t keep = sample[c] | active[c];
      row_kept += keep & 1;
      row_zero_samples += sample[c] & ~active[c] & 1;
      row[c] = keep ? row[c] : 0.f;
    }
    kept += row_kept;
    counters.zero_diag += row_zero_samples;
    counters.pred_hit += row_predicted_zero;
  }
  counters.predicted = rows * width - kept;
  if (audit) counters.pred_miss = counters.predicted - counters.pred_hit;
  return counters;
}

}  // namespace
}  // namespace onnxpred
