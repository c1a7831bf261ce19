// The window rule on a band of k computed output rows. Which columns are samples, and which lie in
// one window, are bit arrays built once per call (BandRuleMasks); where P was above -margin is a
// bit array the row tile recorded while P was in registers. Per band the rule masks those bits
// with the samples', ORs them across windows with word shifts, and writes each row once, keeping
// lanes by mask. No loop runs per output, so rows shorter than a vector cost no
// scalar tail. Written against an instruction set (simd.h) and instantiated by each tiles_<isa>.cc.
#pragma once

#include <algorithm>
#include <cstdint>

#include "operators/conv/simd.h"
#include "operators/conv/tile_kernels.h"

namespace onnxpred {
namespace {

// The 64 bits from bit `first` on of a bit array whose words around `first`'s are readable: one
// past it, and before bit 0 where `first` is negative.
inline uint64_t BitsAt(const uint64_t* bits, int64_t first) {
  const int64_t word = first >> 6, shift = first & 63;  // floor division, also below bit 0
  return bits[word] >> shift | (bits[word + 1] << 1) << (63 - shift);  // no shift by 64
}

// band[i * width + c] for i < rows (rows <= k): zeroes the predicted outputs, adds their counters.
// `above` + `first_bit` are the band's !(P <= -margin) bits. A window is active when any of its
// samples in this band has that bit (NaN does), or when it has no sample in the band; every output
// of an inactive window that is not a sample is predicted.
template <typename Isa>
void ApplyBandRuleToBand(const BandRuleMasks& masks, float* band, const uint64_t* above, int64_t first_bit,
                         int64_t rows, bool audit, uint64_t* scratch, PredictionCounters& counters) {
  constexpr int64_t kLanes = Isa::kLanes;  // divides 64: a vector's lanes never straddle two words
  const int64_t width = masks.width, words = masks.words;
  // Between zero words (scratch_size) as far as a window reaches: its reads need no bounds checks.
  uint64_t* sample_above = scratch + masks.reach_words();
  uint64_t* active = sample_above + words + masks.reach_words() + 1;
  // Word by word, each assigned once: no clearing pass (a memset call per band cost as much as the
  // rule itself on 14-column planes).
  for (int64_t w = 0; w < words; ++w) {  // bits past the row's end are not samples
    uint64_t bits = 0;
    for (int64_t i = 0; i < rows; ++i) bits |= BitsAt(above, first_bit + i * width + w * 64) & masks.sample_row(i)[w];
    sample_above[w] = bits;
  }
  const uint64_t* empty = masks.empty_windows(rows);
  for (int64_t w = 0; w < words; ++w) {  // OR over the columns of each window
    uint64_t bits = empty[w];
    for (int64_t d = -masks.reach; d <= masks.reach; ++d)
      bits |= BitsAt(sample_above, w * 64 + d) & masks.same_window(d)[w];
    active[w] = bits;
  }
  int64_t kept = 0, predicted_zero = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const uint64_t* sample = masks.sample_row(i);
    int64_t row_kept = 0;
    for (int64_t w = 0; w < words; ++w) {  // counted a word at a time: no bits past the row's end
      row_kept += __builtin_popcountll(sample[w] | active[w]);
      counters.zero_diag += __builtin_popcountll(sample[w] & ~active[w]);
    }
    kept += row_kept;
    if (row_kept == width && !audit) continue;
    // A row with a predicted output is rewritten whole: a branch per vector on whether it holds
    // one mispredicted as often as windows trigger, and cost the stems' single pass 10-20%.
    float* row = band + i * width;
    auto apply = [&](int64_t c, int64_t count, auto load, auto store) {
      const uint32_t valid = static_cast<uint32_t>((uint64_t{1} << count) - 1);
      const uint32_t keep = static_cast<uint32_t>((sample[c / 64] | active[c / 64]) >> (c % 64)) & valid;
      const typename Isa::V values = load(row + c);
      if (audit) predicted_zero += Isa::CountLanes(Isa::ZeroLanes(values) & ~keep & valid);
      store(row + c, Isa::KeepLanes(keep, values));
    };
    int64_t c = 0;
    for (; c + kLanes <= width; c += kLanes) {
      apply(c, kLanes, [](const float* p) { return Isa::Load(p); },
            [](float* p, typename Isa::V v) { Isa::Store(p, v); });
    }
    if (c < width) {
      const int64_t count = width - c;
      apply(c, count, [&](const float* p) { return Isa::LoadPartial(p, count); },
            [&](float* p, typename Isa::V v) { Isa::StorePartial(p, v, count); });
    }
  }
  const int64_t predicted = rows * width - kept;
  counters.predicted += predicted;
  if (audit) {
    counters.pred_hit += predicted_zero;
    counters.pred_miss += predicted - predicted_zero;
  }
}

template <typename Isa>
PredictionCounters ApplyBandRule(const BandRuleMasks& masks, float* plane, const uint64_t* above, int64_t height,
                                 int64_t band_begin, int64_t band_end, bool audit, uint64_t* scratch) {
  PredictionCounters counters;
  const int64_t k = masks.window;
  if (k == 1) {  // every output is its window's only sample: nothing to predict, only triggers to count
    const int64_t count = (std::min(height, band_end) - band_begin) * masks.width;
    int64_t above_count = 0;
    for (int64_t bit = 0; bit < count; bit += 64) {
      const uint64_t word = BitsAt(above, bit);
      above_count += __builtin_popcountll(count - bit >= 64 ? word : word & ((uint64_t{1} << (count - bit)) - 1));
    }
    counters.zero_diag = count - above_count;
    return counters;
  }
  for (int64_t r0 = band_begin * k; r0 < std::min(height, band_end * k); r0 += k) {
    ApplyBandRuleToBand<Isa>(masks, plane + r0 * masks.width, above, (r0 - band_begin * k) * masks.width,
                             std::min(k, height - r0), audit, scratch, counters);
  }
  return counters;
}

}  // namespace
}  // namespace onnxpred
