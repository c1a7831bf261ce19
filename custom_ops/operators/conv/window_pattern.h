// Which outputs of a k x k window are computed first ("sampled") to predict the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace onnxpred {

// A sampling pattern is data, not code: the list of (row, col) offsets inside the window.
// Only the diagonal exists in op version 1; other patterns (anti-diagonal, centre, corners)
// are new lists, not new kernels.
struct WindowPattern {
  int64_t size = 1;                    // k
  std::vector<int64_t> sample_rows;    // offsets in [0, k)
  std::vector<int64_t> sample_cols;
  std::vector<uint8_t> is_sample;      // k*k flags, row-major

  static WindowPattern Diagonal(int64_t k) {
    WindowPattern p;
    p.size = k;
    p.is_sample.assign(static_cast<size_t>(k * k), 0);
    for (int64_t i = 0; i < k; ++i) {
      p.sample_rows.push_back(i);
      p.sample_cols.push_back(i);
      p.is_sample[static_cast<size_t>(i * k + i)] = 1;
    }
    return p;
  }
};

}  // namespace onnxpred
