// The optional `counters` output both ops share: int64[7] in the contract's order, summed over a call.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "onnxruntime_cxx_api.h"
#include "op_contract.h"
#include "operators/conv/conv_geometry.h"

namespace onnxpred {

// Output `index`, or null when the node does not have it (then nothing need be counted).
inline Ort::UnownedValue CountersOutput(const Ort::KernelContext& context, size_t index) {
  if (context.GetOutputCount() <= index) return Ort::UnownedValue{nullptr};
  return context.GetOutput(index, {contract::kCounterCount});
}

// Writes the counters output `value` (from CountersOutput) unless it is null: the tasks' counters
// summed, with the call's outputs and dense MACs; pred_hit and pred_miss are -1 unless `audit`.
inline void WriteCounters(Ort::UnownedValue& value, const std::vector<PredictionCounters>& tasks,
                          const ConvGeometry& g, bool audit) {
  if (value == nullptr) return;
  PredictionCounters total;
  for (const auto& counters : tasks) total += counters;
  total.outputs = g.batch * g.out_channels * g.out_height * g.out_width;
  total.macs_dense = total.outputs * g.macs_per_output();
  if (!audit) total.pred_hit = total.pred_miss = -1;
  const int64_t values[contract::kCounterCount] = {total.outputs,  total.zero_diag, total.predicted,
                                                   total.pred_hit, total.pred_miss, total.macs_dense,
                                                   total.macs_executed};
  std::copy(values, values + contract::kCounterCount, value.GetTensorMutableData<int64_t>());
}

}  // namespace onnxpred
