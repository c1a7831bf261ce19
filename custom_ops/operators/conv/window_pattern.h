// Which outputs of a k x k window are computed first ("sampled") to predict the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace onnxpred {

// A sampling pattern is data, not code: the list of (row, col) offsets inside the window. Every
// kernel path reads these lists, so a pattern is a new list, not a new kernel.
struct WindowPattern {
  int64_t size = 1;                    // k
  std::vector<int64_t> sample_rows;    // offsets in [0, k), row-major
  std::vector<int64_t> sample_cols;
  std::vector<uint8_t> is_sample;      // k*k flags, row-major

  // Every output of a window is a sample (window 1, both diagonals at k = 2): nothing is predicted.
  bool SamplesEverything() const { return sample_rows.size() == is_sample.size(); }

  // The contract's patterns (docs/predictive_conv.md, reference.sampling_pattern).
  static WindowPattern Named(const std::string& name, int64_t k) {
    using Rule = bool (*)(int64_t k, int64_t i, int64_t j);
    struct NamedRule {
      const char* name;
      Rule samples;
    };
    static constexpr NamedRule kRules[] = {
        {"diagonal", [](int64_t, int64_t i, int64_t j) { return i == j; }},
        {"anti_diagonal", [](int64_t k, int64_t i, int64_t j) { return i + j == k - 1; }},
        {"both_diagonals", [](int64_t k, int64_t i, int64_t j) { return i == j || i + j == k - 1; }},
        {"checkerboard", [](int64_t, int64_t i, int64_t j) { return (i + j) % 2 == 0; }},
        {"corners", [](int64_t k, int64_t i, int64_t j) { return (i == 0 || i == k - 1) && (j == 0 || j == k - 1); }},
        {"centre", [](int64_t k, int64_t i, int64_t j) {
           return (i == (k - 1) / 2 || i == k / 2) && (j == (k - 1) / 2 || j == k / 2);
         }},
    };
    for (const NamedRule& rule : kRules) {
      if (name != rule.name) continue;
      WindowPattern p;
      p.size = k;
      p.is_sample.assign(static_cast<size_t>(k * k), 0);
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j)
          if (rule.samples(k, i, j)) {
            p.sample_rows.push_back(i);
            p.sample_cols.push_back(j);
            p.is_sample[static_cast<size_t>(i * k + j)] = 1;
          }
      return p;
    }
    throw std::invalid_argument("unknown sampling pattern \"" + name + "\"");
  }
};

}  // namespace onnxpred
