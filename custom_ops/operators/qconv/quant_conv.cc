#include "operators/qconv/quant_conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "operators/common/isa.h"

namespace onnxpred {

const QuantTileKernels& SelectQuantTileKernels(const std::string& request) {
#if defined(ONNXPRED_X86_TILES)
  __builtin_cpu_init();
  // The VNNI tiles' masked byte stores need AVX-512 BW and VL, which every VNNI CPU has.
  const bool has_vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  const bool has_avx2 = __builtin_cpu_supports("avx2");
  switch (ChooseIsa(request, has_vnni, has_avx2)) {
    case Isa::kAvx512:
      return Avx512VnniQuantTiles();
    case Isa::kAvx2:
      return Avx2QuantTiles();
    case Isa::kPortable:
      break;
  }
#else
  ChooseIsa(request, false, false);
#endif
  return PortableQuantTiles();
}

int64_t QuantGroups(int64_t in_channels, QuantInputLayout layout) {
  return CeilDiv(in_channels, layout == QuantInputLayout::kBiasedBytes ? 4 : 2);
}

QuantWeights PackQuantWeights(const int8_t* weights, int64_t out_channels, int64_t in_channels, int64_t taps,
                              const QuantTileKernels& tiles) {
  const int64_t lanes = tiles.lanes, blocks = CeilDiv(out_channels, lanes);
  const bool bytes = tiles.layout == QuantInputLayout::kBiasedBytes;
  const int64_t per_group = bytes ? 4 : 2;
  QuantWeights packed;
  packed.groups = QuantGroups(in_channels, tiles.layout);
  packed.packed.assign(static_cast<size_t>(blocks * taps * packed.groups * lanes * 4), 0);
  packed.sums.assign(static_cast<size_t>(blocks * lanes), 0);
  const int64_t element = bytes ? 1 : 2;
  packed.chunks = CeilDiv(in_channels, tiles.gather_channels);
  packed.row_bytes = taps * packed.chunks * tiles.gather_channels * element;
  packed.rows.assign(static_cast<size_t>(out_channels * packed.row_bytes), 0);
  for (int64_t m = 0; m < out_channels; ++m) {
    const int64_t block = m / lanes, lane = m % lanes;
    for (int64_t c = 0; c < in_channels; ++c) {
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int8_t w = weights[(m * in_channels + c) * taps + tap];
        packed.sums[static_cast<size_t>(m)] += w;
        uint8_t* group = packed.packed.data() +
                         (((block * taps + tap) * packed.groups + c / per_group) * lanes + lane) * 4;
        uint8_t* row = packed.rows.data() + m * packed.row_bytes +
                       (tap * packed.chunks * tiles.gather_channels + c) * element;
        if (bytes) {
          group[c % per_group] = static_cast<uint8_t>(w);
          *row = static_cast<uint8_t>(w);
        } else {
          const int16_t wide = w;
          std::memcpy(group + 2 * (c % per_group), &wide, sizeof wide);
          std::memcpy(row, &wide, sizeof wide);
        }
      }
    }
  }
  return packed;
}

float OutputScale(float x_scale, float w_scale, float y_scale) {
  const float product = x_scale * w_scale;  // rounded to float32 first, as onnxruntime
  return product / y_scale;
}

int32_t ZeroThreshold(float scale, bool zero_point_is_max, float margin, float x_scale, float w_scale) {
  constexpr int64_t kMin = std::numeric_limits<int32_t>::min(), kMax = std::numeric_limits<int32_t>::max();
  if (margin > 0) {
    const double bound = std::floor(-static_cast<double>(margin) / (static_cast<double>(x_scale) * w_scale));
    return static_cast<int32_t>(std::clamp(bound, static_cast<double>(kMin), static_cast<double>(kMax)));
  }
  if (zero_point_is_max) return static_cast<int32_t>(kMax);
  auto is_zero = [scale](int64_t acc) { return static_cast<float>(static_cast<int32_t>(acc)) * scale <= 0.5f; };
  // The requantization is monotone in acc: walk from the real-number estimate 0.5 / scale to the
  // largest acc that counts as zero (a few steps; up to the float32 spacing of acc beyond 2^24).
  int64_t t = static_cast<int64_t>(std::clamp(std::floor(0.5 / static_cast<double>(scale)), static_cast<double>(kMin),
                                              static_cast<double>(kMax)));
  while (t > kMin && !is_zero(t)) --t;
  while (t < kMax && is_zero(t + 1)) ++t;
  return static_cast<int32_t>(t);
}

namespace {

// The set bits of v, inline: this file is built for every x86-64, where __builtin_popcountll is a
// library call (a hot one when the reductions are short).
inline int64_t CountBits(uint64_t v) {
  v = v - ((v >> 1) & 0x5555555555555555ull);
  v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return static_cast<int64_t>((v * 0x0101010101010101ull) >> 56);
}

// The vectors of `vector_lanes` lanes a tile computes to store the lanes set in `stored` (not 0):
// from the first one's to the last one's, lanes [first_lane, end_lane), `vectors` of them.
struct VectorSpan {
  int64_t first_lane, end_lane, vectors;
};
inline VectorSpan StoredVectors(uint64_t stored, int64_t vector_lanes) {
  const int64_t first = __builtin_ctzll(stored) / vector_lanes;
  const int64_t end = CeilDiv(64 - __builtin_clzll(stored), vector_lanes);
  return {first * vector_lanes, end * vector_lanes, end - first};
}

// Adds each window's triggered channels (the block's lanes not kept) times its samples to zero_diag
// and times its rest outputs to predicted: a popcount per window and block, which is a good share of
// a task at short reductions, so it is also built for CPUs with the instruction.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("popcnt", "default")))
#endif
void CountTriggered(const uint64_t* keeps, const uint64_t* masks, int64_t blocks, const int64_t* samples,
                    const int64_t* rests, int64_t windows, PredictionCounters& counters) {
  int64_t zero_diag = 0, predicted = 0;
  for (int64_t b = 0; b < windows; ++b) {
    int64_t triggered = 0;
    for (int64_t block = 0; block < blocks; ++block) {
      triggered += __builtin_popcountll(masks[block] & ~keeps[b * blocks + block]);
    }
    zero_diag += triggered * samples[b];
    predicted += triggered * rests[b];
  }
  counters.zero_diag += zero_diag;
  counters.predicted += predicted;
}

// dst[j * dst_stride + i] = src[i * src_stride + j] ^ flip for i < rows, j < cols: the input copy's
// NCHW -> NHWC, and a block's outputs pixels x channels -> Y's planes.
void TransposeBytes(const uint8_t* src, int64_t src_stride, uint8_t* dst, int64_t dst_stride, int64_t rows,
                    int64_t cols, uint8_t flip) {
  int64_t whole_rows = 0, whole_cols = 0;
#if defined(__SSE2__)
  // 16 x 16 blocks in registers: four rounds of interleaving row i with row i + 8 transpose one.
  whole_rows = rows / 16 * 16;
  whole_cols = cols / 16 * 16;
  const __m128i flip_bytes = _mm_set1_epi8(static_cast<char>(flip));
  for (int64_t i0 = 0; i0 < whole_rows; i0 += 16) {
    for (int64_t j0 = 0; j0 < whole_cols; j0 += 16) {
      __m128i block[16], next[16];
      for (int i = 0; i < 16; ++i) {
        block[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (i0 + i) * src_stride + j0));
      }
      for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 8; ++i) {
          next[2 * i] = _mm_unpacklo_epi8(block[i], block[i + 8]);
          next[2 * i + 1] = _mm_unpackhi_epi8(block[i], block[i + 8]);
        }
        std::copy(next, next + 16, block);
      }
      for (int j = 0; j < 16; ++j) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (j0 + j) * dst_stride + i0),
                         _mm_xor_si128(block[j], flip_bytes));
      }
    }
  }
#endif
  // The edges a byte at a time: rows past the whole blocks, and the whole blocks' last columns.
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = i < whole_rows ? whole_cols : 0; j < cols; ++j)
      dst[j * dst_stride + i] = static_cast<uint8_t>(src[i * src_stride + j] ^ flip);
}

}  // namespace

void QuantInputRow(const uint8_t* x, bool x_signed, int32_t x_zero_point, const ConvGeometry& g, bool channels_last,
                   QuantInputLayout layout, int64_t groups, int64_t row, int64_t column_begin, int64_t column_end,
                   uint8_t* copy) {
  const int64_t hp = g.padded_height(), wp = g.padded_width(), stride = groups * 4;
  const int64_t n = row / hp, h = row % hp - g.pad_top;
  uint8_t* dst = copy + row * wp * stride;
  const int32_t bias = x_signed ? 128 : 0;  // int8 x + 128 is x's byte with its top bit flipped
  const bool bytes = layout == QuantInputLayout::kBiasedBytes;
  // Padding pixels hold x_zero_point in the layout's form (so they add nothing); padding channels
  // meet zero weights, so their value does not matter.
  std::memset(dst + column_begin * stride, bytes ? x_zero_point + bias : 0,
              static_cast<size_t>((column_end - column_begin) * stride));
  // x's columns [w0, w1) fall in the span.
  const int64_t w0 = std::max<int64_t>(column_begin - g.pad_left, 0);
  const int64_t w1 = std::min(column_end - g.pad_left, g.in_width);
  if (h < 0 || h >= g.in_height || w0 >= w1) return;
  // x's element (c, w) of this row is rows[c * channel_step + w * pixel_step].
  const int64_t channel_step = channels_last ? 1 : g.in_height * g.in_width;
  const int64_t pixel_step = channels_last ? g.in_channels : 1;
  const uint8_t* rows = x + (channels_last ? (n * g.in_height + h) * g.in_width * g.in_channels
                                           : (n * g.in_channels * g.in_height + h) * g.in_width);
  uint8_t* pixels = dst + g.pad_left * stride;
  if (!bytes) {
    for (int64_t w = w0; w < w1; ++w) {
      for (int64_t c = 0; c < g.in_channels; ++c) {
        const uint8_t raw = rows[c * channel_step + w * pixel_step];
        const int32_t value = x_signed ? static_cast<int8_t>(raw) : raw;
        const int16_t centred = static_cast<int16_t>(value - x_zero_point);
        std::memcpy(pixels + w * stride + 2 * c, &centred, sizeof centred);
      }
    }
    return;
  }
  if (!channels_last) {
    TransposeBytes(rows + w0, channel_step, pixels + w0 * stride, stride, g.in_channels, w1 - w0,
                   static_cast<uint8_t>(bias));
    return;
  }
  // Eight channels a word (a byte loop of unknown length is not vectorized at -O2).
  const uint64_t flip = static_cast<uint64_t>(bias) * 0x0101010101010101ull;
  for (int64_t w = w0; w < w1; ++w) {
    const uint8_t* from = rows + w * pixel_step;
    uint8_t* to = pixels + w * stride;
    int64_t c = 0;
    for (; c + 8 <= g.in_channels; c += 8) {
      uint64_t word;
      std::memcpy(&word, from + c, sizeof word);
      word ^= flip;
      std::memcpy(to + c, &word, sizeof word);
    }
    for (; c < g.in_channels; ++c) to[c] = static_cast<uint8_t>(from[c] ^ bias);
  }
}

QuantInputPlan::QuantInputPlan(const ConvGeometry& g, bool x_is_layout, int64_t gather_bytes, int64_t window)
    : batch_(g.batch), padded_height_(g.padded_height()), padded_width_(g.padded_width()) {
  // Output index i reads padded positions [i * s, i * s + (k - 1) * d]: inside x from the first i
  // with i * s >= pad, up to the last with i * s + (k - 1) * d < pad + size.
  auto inside = [](int64_t pad, int64_t size, int64_t kernel, int64_t stride, int64_t dilation, int64_t outputs,
                   int64_t& begin, int64_t& end) {
    begin = std::min(CeilDiv(pad, stride), outputs);
    const int64_t last = pad + size - 1 - (kernel - 1) * dilation;  // the last position a first tap may take
    end = last < 0 ? 0 : std::clamp(last / stride + 1, begin, outputs);
  };
  inside(g.pad_top, g.in_height, g.kernel_h, g.stride_h, g.dilation_h, g.out_height, row_begin_, row_end_);
  inside(g.pad_left, g.in_width, g.kernel_w, g.stride_w, g.dilation_w, g.out_width, column_begin_, column_end_);
  last_image_row_end_ = row_end_;
  const int64_t row_bytes = g.in_width * g.in_channels;
  if (g.in_channels % gather_bytes != 0) {
    // Short of x's last row in the last image; the row before it must hold a chunk's run-on.
    const int64_t last = g.pad_top + g.in_height - 2 - (g.kernel_h - 1) * g.dilation_h;
    last_image_row_end_ = last < 0 ? 0 : std::clamp(last / g.stride_h + 1, row_begin_, row_end_);
    if (row_bytes < gather_bytes) last_image_row_end_ = row_begin_;
  }
  // Whole windows: begins rounded up, ends short of the plane rounded down.
  row_begin_ = CeilDiv(row_begin_, window) * window;
  column_begin_ = CeilDiv(column_begin_, window) * window;
  auto window_end = [window](int64_t end, int64_t outputs, int64_t begin) {
    return std::max(end < outputs ? end / window * window : end, begin);
  };
  row_end_ = window_end(row_end_, g.out_height, row_begin_);
  last_image_row_end_ = window_end(last_image_row_end_, g.out_height, row_begin_);
  column_end_ = window_end(column_end_, g.out_width, column_begin_);
  direct_ = x_is_layout && g.in_channels % 4 == 0 && row_begin_ < row_end_ && column_begin_ < column_end_;
  if (!direct_) return;
  // The padded rows and columns the border pixels read (a chunk's run-on past a column lands on
  // zero weights: it reads whatever is there).
  auto reach = [](int64_t output, int64_t kernel, int64_t stride, int64_t dilation) {
    return output * stride + (kernel - 1) * dilation + 1;  // one past the last padded position output reads
  };
  top_rows_end_ = row_begin_ > 0 ? reach(row_begin_ - 1, g.kernel_h, g.stride_h, g.dilation_h) : 0;
  bottom_rows_begin_ = row_end_ < g.out_height ? row_end_ * g.stride_h : padded_height_;
  last_image_bottom_begin_ = last_image_row_end_ < g.out_height ? last_image_row_end_ * g.stride_h : padded_height_;
  left_end_ = column_begin_ > 0 ? reach(column_begin_ - 1, g.kernel_w, g.stride_w, g.dilation_w) : 0;
  right_begin_ = column_end_ < g.out_width ? column_end_ * g.stride_w : padded_width_;
}

int QuantInputPlan::CopySpans(int64_t row, int64_t (&spans)[2][2]) const {
  const int64_t n = row / padded_height_, r = row % padded_height_;
  const int64_t bottom = n + 1 == batch_ ? last_image_bottom_begin_ : bottom_rows_begin_;
  if (!direct_ || r < top_rows_end_ || r >= bottom) {
    spans[0][0] = 0;
    spans[0][1] = padded_width_;
    return 1;
  }
  int count = 0;
  if (left_end_ > 0) {
    spans[count][0] = 0;
    spans[count++][1] = left_end_;
  }
  if (right_begin_ < padded_width_) {
    spans[count][0] = right_begin_;
    spans[count++][1] = padded_width_;
  }
  return count;
}

QuantConv::QuantConv(const QuantCall& call)
    : call_(call),
      k_(call.pattern.size),
      bands_(CeilDiv(call.geometry.out_height, call.pattern.size)),
      windows_(CeilDiv(call.geometry.out_width, call.pattern.size)),
      blocks_(CeilDiv(call.geometry.out_channels, call.tiles.lanes)) {
  const ConvGeometry& g = call.geometry;
  for (int64_t c = 0; c < g.out_width; ++c) {
    column_phase_.push_back(c % k_);
    column_window_.push_back(c / k_);
  }
  // A task takes at least kMinBandsPerTask bands (at window 1, a row), more on small planes, so that
  // its tiles are mostly full; an image of few bands splits its blocks of channels among tasks too,
  // so that threads share it evenly. Bands and blocks are dealt out evenly: tasks differ by one at most
  // (a 10-band layer in tasks of 3, 3, 3 and 1 band left a thread of two idle for part of it).
  const int64_t min_bands = k_ > 1 ? kMinBandsPerTask : 1;
  const int64_t bands_per_task =
      std::clamp<int64_t>(std::max(kTaskPixels / (k_ * g.out_width), min_bands), 1, bands_);
  band_tasks_ = std::max<int64_t>(bands_ / bands_per_task, 1);
  block_tasks_ = std::clamp<int64_t>(CeilDiv(kMinTasksPerImage, band_tasks_), 1, blocks_);
  // With windows of several outputs, whole multiples of kTaskMultiple tasks where the bands or blocks
  // allow: one thread of 2 or 4 waited a whole task for the others when an odd count was shared out.
  while (k_ > 1 && band_tasks_ * block_tasks_ % kTaskMultiple != 0 && band_tasks_ < bands_) ++band_tasks_;
  while (k_ > 1 && band_tasks_ * block_tasks_ % kTaskMultiple != 0 && block_tasks_ < blocks_) ++block_tasks_;
  tasks_per_image_ = band_tasks_ * block_tasks_;
  const int64_t stride = call.weights.groups * 4;
  // Both in tenths of a dense tile's multiply-add vector, per output.
  const int64_t taps = g.kernel_h * g.kernel_w;
  const bool bytes = call.tiles.layout == QuantInputLayout::kBiasedBytes;
  const int64_t vector_bytes = call.tiles.gather_channels * (bytes ? 1 : 2);
  gather_vectors_ = taps * call.weights.chunks;
  dense_cost_ = 10 * taps * stride / vector_bytes + kDenseOutputCost;
  for (int64_t i = 0; i < g.kernel_h; ++i)
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      copy_tap_offsets_.push_back((i * g.dilation_h * g.padded_width() + j * g.dilation_w) * stride);
      direct_tap_offsets_.push_back((i * g.dilation_h * g.in_width + j * g.dilation_w) * stride);
    }
  for (int64_t i = 0; i < k_; ++i)
    for (int64_t j = 0; j < k_; ++j) {
      if (call.pattern.is_sample[static_cast<size_t>(i * k_ + j)]) continue;
      rest_pixels_.push_back(i * g.out_width + j);
      rest_copy_offsets_.push_back((i * g.stride_h * g.padded_width() + j * g.stride_w) * stride);
      rest_direct_offsets_.push_back((i * g.stride_h * g.in_width + j * g.stride_w) * stride);
    }
  const int64_t window_rest = std::max<int64_t>(static_cast<int64_t>(rest_pixels_.size()), 1);
  run_windows_ = std::clamp<int64_t>(call.tiles.gather_pixels / window_rest, 1, kMaxRunWindows);
  vector_lanes_ = call.tiles.lanes / call.tiles.vectors;
  split_vectors_ = g.macs_per_output() >= kMinSplitReduction;
}

int64_t QuantConv::GatherCost(int64_t rest_outputs) const {
  const int64_t calls = CeilDiv(rest_outputs, call_.tiles.gather_pixels);
  return kGatherVectorCost * gather_vectors_ * rest_outputs +
         kGatherOutputCost * (call_.tiles.gather_pixels * calls + rest_outputs) / 2;
}

inline QuantConv::ChannelSplit QuantConv::SplitChannels(uint64_t keep, uint64_t mask, int64_t valid,
                                                        int64_t rest_outputs, bool split_vectors) const {
  if (keep == mask) return {keep, 0};
  const int64_t gather_cost = GatherCost(rest_outputs), lane_cost = dense_cost_ * rest_outputs;
  if (CountBits(keep) * gather_cost < valid * lane_cost) return {0, keep};
  if (!split_vectors) return {keep, 0};
  // An end vector is gathered while its kept channels cost less so than its multiply-adds (a tile a
  // vector narrower saves little of its fixed part).
  const uint64_t vector_mask = (uint64_t{1} << vector_lanes_) - 1;
  const int64_t vector_cost = (dense_cost_ - kDenseOutputCost) * rest_outputs;
  int64_t first = 0, end = CeilDiv(valid, vector_lanes_);
  auto cheaper_gathered = [&](int64_t v) {
    const int64_t lanes = std::min(vector_lanes_, valid - v * vector_lanes_);
    return CountBits(keep >> (v * vector_lanes_) & vector_mask) * gather_cost < lanes * vector_cost;
  };
  while (end - first > 1 && cheaper_gathered(first)) ++first;
  while (end - first > 1 && cheaper_gathered(end - 1)) --end;
  const uint64_t span = (end - first) * vector_lanes_ == 64
                            ? ~uint64_t{0}
                            : ((uint64_t{1} << ((end - first) * vector_lanes_)) - 1) << (first * vector_lanes_);
  return {keep & span, keep & ~span};
}

// Up to kMaxQuantPixels pixels for one tile call: where each one's input and output are, the
// channels it stores, and its window.
class QuantConv::PixelBatch {
 public:
  QuantPixel pixels[kMaxQuantPixels];
  uint8_t* outs[kMaxQuantPixels];
  uint64_t store[kMaxQuantPixels];
  int64_t windows[kMaxQuantPixels];
  int count = 0;

  bool Add(QuantPixel pixel, uint8_t* out, uint64_t store_lanes, int64_t window) {
    pixels[count] = pixel;
    outs[count] = out;
    store[count] = store_lanes;
    windows[count++] = window;
    return count == kMaxQuantPixels;
  }
};

void QuantConv::GatherRest(int64_t block, uint64_t keep, const std::vector<PendingPixel>& rest,
                           int64_t rest_count) const {
  const ConvGeometry& g = call_.geometry;
  const QuantTileKernels& tiles = call_.tiles;
  QuantGather gather{g.kernel_h * g.kernel_w, call_.weights.chunks, call_.epilogue};
  gather.epilogue.offset += block * tiles.lanes;
  gather.epilogue.scale += block * tiles.lanes;
  int64_t channels[64];
  int channel_count = 0;
  for (uint64_t bits = keep; bits != 0; bits &= bits - 1) channels[channel_count++] = __builtin_ctzll(bits);
  QuantPixel pixels[kMaxQuantGatherPixels];
  uint8_t* outs[kMaxQuantGatherPixels];
  const uint8_t* weights[kMaxQuantGatherChannels];
  for (int64_t p0 = 0; p0 < rest_count; p0 += tiles.gather_pixels) {
    const int pixel_count = static_cast<int>(std::min(tiles.gather_pixels, rest_count - p0));
    for (int p = 0; p < pixel_count; ++p) {
      pixels[p] = rest[static_cast<size_t>(p0 + p)].input;
      outs[p] = rest[static_cast<size_t>(p0 + p)].out;
    }
    for (int c0 = 0; c0 < channel_count; c0 += kMaxQuantGatherChannels) {
      const int count = std::min(kMaxQuantGatherChannels, channel_count - c0);
      for (int c = 0; c < count; ++c) {
        weights[c] = call_.weights.rows.data() + (block * tiles.lanes + channels[c0 + c]) * call_.weights.row_bytes;
      }
      tiles.gather[count - 1][pixel_count - 1](gather, pixels, weights, channels + c0, outs);
    }
  }
}

template <bool kSplitVectors>
PredictionCounters QuantConv::RunTaskWith(int64_t task) const {
  const ConvGeometry& g = call_.geometry;
  const WindowPattern& pattern = call_.pattern;
  const QuantTileKernels& tiles = call_.tiles;
  // With windows of several outputs an image's tasks go last first: onnxruntime's threads take them in
  // order, and the dealing below puts the larger ones last (VGG-16 int8, k = 3, 2 threads: the 28x28
  // layers' 9 tasks of 6-12 bands x blocks ran 4-6% faster so, the others alike). The rows of window 1
  // are equal tasks, and bottom first ran VGG-16 conv2 2-3% slower.
  const int64_t n = task / tasks_per_image_;
  const int64_t image_task = k_ > 1 ? tasks_per_image_ - 1 - task % tasks_per_image_ : task % tasks_per_image_;
  const int64_t band_task = image_task / block_tasks_;
  const int64_t band0 = band_task * bands_ / band_tasks_, bands = (band_task + 1) * bands_ / band_tasks_ - band0;
  // The task's blocks of channels [block0, block1), `task_blocks` of them.
  const int64_t block_task = image_task % block_tasks_;
  const int64_t block0 = block_task * blocks_ / block_tasks_, block1 = (block_task + 1) * blocks_ / block_tasks_;
  const int64_t task_blocks = block1 - block0;
  const int64_t r0 = band0 * k_, r1 = std::min(r0 + bands * k_, g.out_height), windows = bands * windows_;
  const int64_t lanes = tiles.lanes, taps = g.kernel_h * g.kernel_w, plane = g.out_height * g.out_width;
  const int64_t stride = call_.weights.groups * 4, macs = g.macs_per_output();
  const uint8_t* image = call_.input + n * g.padded_height() * g.padded_width() * stride;
  const uint8_t y_zero_point = static_cast<uint8_t>(call_.epilogue.zero_point);
  // Per row of the task, its offset in a window and its band's first window among the task's (the
  // per-pixel lookups below are hot at small reductions: no division there).
  std::vector<int64_t> row_phase(static_cast<size_t>(r1 - r0)), row_windows(static_cast<size_t>(r1 - r0));
  for (int64_t r = r0; r < r1; ++r) {
    row_phase[static_cast<size_t>(r - r0)] = r % k_ * k_;
    row_windows[static_cast<size_t>(r - r0)] = (r / k_ - band0) * windows_;
  }
  auto is_sample = [&](int64_t r, int64_t c) {
    return pattern.is_sample[static_cast<size_t>(row_phase[static_cast<size_t>(r - r0)] +
                                                 column_phase_[static_cast<size_t>(c)])] != 0;
  };
  // The task's windows, band by band.
  auto window_of = [&](int64_t r, int64_t c) {
    return row_windows[static_cast<size_t>(r - r0)] + column_window_[static_cast<size_t>(c)];
  };
  // Output row r's input at column 0, in x (meaningful where the row reads x) and in the copy; each
  // column steps both by column_bytes.
  const uint8_t* x_image = call_.x + n * g.in_height * g.in_width * stride;
  const int64_t column_bytes = g.stride_w * stride;
  auto x_row = [&](int64_t r) { return ((r * g.stride_h - g.pad_top) * g.in_width - g.pad_left) * stride; };
  auto copy_row = [&](int64_t r) { return image + r * g.stride_h * g.padded_width() * stride; };
  auto pixel = [&](int64_t r, int64_t c) -> QuantPixel {
    if (call_.plan.Direct(n, r, c)) return {x_image + x_row(r) + c * column_bytes, direct_tap_offsets_.data()};
    return {copy_row(r) + c * column_bytes, copy_tap_offsets_.data()};
  };
  // The task's window b: its first output row and column.
  auto window_row = [&](int64_t b) { return r0 + b / windows_ * k_; };
  auto window_column = [&](int64_t b) { return b % windows_ * k_; };
  // Where the tiles write a pixel's block of outputs: Y itself when it is NHWC (its pixels are rows of
  // channels, as the tiles write them); else the task's outputs staged pixel-major, [pixel][block][lane],
  // each block going to Y's planes in one transpose at its end. With windows of several outputs,
  // predicted outputs keep y_zero_point: only computed ones are stored.
  const int64_t task_pixels = (r1 - r0) * g.out_width;
  const int64_t pixel_bytes = call_.channels_last ? g.out_channels : task_blocks * lanes;
  const int64_t task_bytes = std::min(task_blocks * lanes, g.out_channels - block0 * lanes);  // of a pixel
  std::vector<uint8_t> staged;
  uint8_t* outputs = call_.output + (n * plane + r0 * g.out_width) * g.out_channels + block0 * lanes;
  if (!call_.channels_last) {
    staged.resize(static_cast<size_t>(task_pixels * pixel_bytes));
    outputs = staged.data();
  }
  if (k_ > 1 && (!call_.channels_last || task_bytes == g.out_channels)) {
    std::memset(outputs, y_zero_point, static_cast<size_t>(task_pixels * pixel_bytes));
  } else if (k_ > 1) {  // the task's channels of each NHWC pixel
    for (int64_t p = 0; p < task_pixels; ++p) std::memset(outputs + p * pixel_bytes, y_zero_point, task_bytes);
  }
  int64_t output_block = 0;  // the block being computed, from block0
  auto output_at = [&](int64_t r, int64_t c) {
    return outputs + ((r - r0) * g.out_width + c) * pixel_bytes + output_block * lanes;
  };
  // Visits columns c = first, first + step, ... of output row r with pixel(r, c), output_at(r, c) and
  // window_of(r, c), stepped rather than recomputed (at short reductions that took as long as a tile).
  auto visit_row = [&](int64_t r, int64_t first, int64_t step, auto&& visit) {
    const bool direct_row = call_.plan.DirectRow(n, r);
    const uint8_t* copy_input = copy_row(r);
    const uint8_t* x_input = direct_row ? x_image + x_row(r) : nullptr;
    const int64_t window0 = row_windows[static_cast<size_t>(r - r0)];
    uint8_t* out = output_at(r, first);
    for (int64_t c = first; c < g.out_width; c += step, out += step * pixel_bytes) {
      const QuantPixel input = direct_row && call_.plan.DirectColumn(c)
                                   ? QuantPixel{x_input + c * column_bytes, direct_tap_offsets_.data()}
                                   : QuantPixel{copy_input + c * column_bytes, copy_tap_offsets_.data()};
      visit(input, out, window0 + column_window_[static_cast<size_t>(c)]);
    }
  };
  // Visits the rest outputs of the task's window b with pixel(r, c) and output_at(r, c): by offsets
  // from its corner when it lies inside the plane and its pixels read one source, else one by one.
  // Inlined: called out of line once RunTask grew, it cost a short reduction's layer 5%.
  auto visit_rest = [&](int64_t b, auto&& visit) __attribute__((always_inline)) {
    const int64_t r = window_row(b), c0 = window_column(b), r_end = r + k_ - 1, c_end = c0 + k_ - 1;
    const bool direct = call_.plan.Direct(n, r, c0) && call_.plan.Direct(n, r_end, c_end);
    if (r_end < g.out_height && c_end < g.out_width && (direct || !call_.plan.direct())) {
      const QuantPixel corner = pixel(r, c0);
      const std::vector<int64_t>& inputs = direct ? rest_direct_offsets_ : rest_copy_offsets_;
      uint8_t* out = output_at(r, c0);
      for (size_t i = 0; i < inputs.size(); ++i) {
        visit(QuantPixel{corner.input + inputs[i], corner.tap_offsets}, out + rest_pixels_[i] * pixel_bytes);
      }
      return;
    }
    for (int64_t rr = r; rr <= std::min(r_end, g.out_height - 1); ++rr)
      for (int64_t c = c0; c <= std::min(c_end, g.out_width - 1); ++c)
        if (!is_sample(rr, c)) visit(pixel(rr, c), output_at(rr, c));
  };

  // Windows of one output have no rest: a zero sample is counted as it is computed and no window is
  // tracked (the bookkeeping cost a fifth of a short reduction's layer).
  const bool windowed = k_ > 1;
  const int64_t tracked = windowed ? windows : 0;
  // Each window's samples and rest outputs inside the plane; a window without a sample keeps all.
  std::vector<int64_t> samples(static_cast<size_t>(tracked), 0), rests(static_cast<size_t>(tracked), 0);
  for (int64_t r = r0; r < r1 && windowed; ++r)
    for (int64_t c = 0; c < g.out_width; ++c) {
      ++(is_sample(r, c) ? samples : rests)[static_cast<size_t>(window_of(r, c))];
    }
  auto valid_lanes = [&](int64_t block) { return std::min(lanes, g.out_channels - block * lanes); };
  auto lane_mask = [&](int64_t block) {
    const int64_t valid = valid_lanes(block);
    return valid == 64 ? ~uint64_t{0} : (uint64_t{1} << valid) - 1;
  };
  // Bit l of keeps[window * task_blocks + block - block0]: channel block * lanes + l of the window is
  // not triggered.
  std::vector<uint64_t> keeps(static_cast<size_t>(tracked * task_blocks), 0);
  auto keep_of = [&](int64_t window, int64_t block) -> uint64_t& {
    return keeps[static_cast<size_t>(window * task_blocks + block - block0)];
  };
  for (int64_t b = 0; b < tracked; ++b)
    for (int64_t block = block0; samples[static_cast<size_t>(b)] == 0 && block < block1; ++block)
      keep_of(b, block) = lane_mask(block);

  PredictionCounters counters;
  // The gathered windows of a block go in runs of run_windows_: window w's rest outputs are
  // run_rest[run_begin[w], run_begin[w + 1]).
  std::vector<PendingPixel> run_rest(static_cast<size_t>(run_windows_ * k_ * k_)), subset_rest(run_rest.size());
  int64_t run_begin[kMaxRunWindows + 1] = {};
  uint64_t run_keeps[kMaxRunWindows];
  int64_t run_count = 0;
  bool run_direct = false;  // its windows read x in place
  uint8_t audited[kMaxQuantPixels * 64];  // audit: a batch's rest outputs, every channel
  uint64_t zero_bits[kMaxQuantPixels];
  for (int64_t block = block0; block < block1; ++block) {
    const int64_t first = block * lanes, valid = valid_lanes(block);
    const uint64_t mask = lane_mask(block);
    const QuantTileRow& tile_fns = tiles.tile[static_cast<size_t>(CeilDiv(valid, lanes / tiles.vectors) - 1)];
    QuantTile tile{taps, call_.weights.groups,
                   call_.weights.packed.data() + block * taps * call_.weights.groups * lanes * 4, call_.epilogue};
    tile.epilogue.offset += first;
    tile.epilogue.scale += first;
    tile.epilogue.threshold += first;
    output_block = block - block0;
    PixelBatch batch;
    // A sample stores every channel and updates its window's keeps; a rest output stores the
    // channels its window keeps.
    auto flush_samples = [&] {
      if (batch.count == 0) return;
      tile_fns[static_cast<size_t>(batch.count - 1)](tile, batch.pixels, batch.outs, batch.store, zero_bits);
      for (int p = 0; p < batch.count; ++p) {
        if (windowed) {
          keep_of(batch.windows[p], block) |= ~zero_bits[p] & mask;
        } else {
          counters.zero_diag += CountBits(zero_bits[p] & mask);
        }
      }
      counters.macs_executed += batch.count * valid * macs;
      batch.count = 0;
    };
    // The vectors the tiles compute for the rest outputs in the batch: all of them unless vectors are split.
    const VectorSpan whole{0, lanes, tiles.vectors};
    VectorSpan rest_span = whole;
    auto flush_rest = [&] {
      if (batch.count == 0) return;
      if (!call_.audit) {  // the vectors of rest_span
        const VectorSpan span = rest_span;
        if (!kSplitVectors || (span.first_lane == 0 && span.end_lane >= valid)) {
          tile_fns[static_cast<size_t>(batch.count - 1)](tile, batch.pixels, batch.outs, batch.store, zero_bits);
          counters.macs_executed += batch.count * valid * macs;
          batch.count = 0;
          return;
        }
        QuantTile part = tile;
        part.weights += span.first_lane * 4;
        part.epilogue.offset += span.first_lane;
        part.epilogue.scale += span.first_lane;
        part.epilogue.threshold += span.first_lane;
        uint8_t* outs[kMaxQuantPixels];
        uint64_t store[kMaxQuantPixels];
        for (int p = 0; p < batch.count; ++p) {
          outs[p] = batch.outs[p] + span.first_lane;
          store[p] = batch.store[p] >> span.first_lane;
        }
        tiles.tile[static_cast<size_t>(span.vectors - 1)][static_cast<size_t>(batch.count - 1)](part, batch.pixels,
                                                                                                outs, store, zero_bits);
        counters.macs_executed += batch.count * (std::min(span.end_lane, valid) - span.first_lane) * macs;
        batch.count = 0;
        return;
      }
      // Audit computes every channel, to count the predicted outputs that were right.
      uint8_t* outs[kMaxQuantPixels];
      uint64_t every[kMaxQuantPixels];
      for (int p = 0; p < batch.count; ++p) {
        outs[p] = audited + p * lanes;
        every[p] = mask;
      }
      tile_fns[static_cast<size_t>(batch.count - 1)](tile, batch.pixels, outs, every, zero_bits);
      for (int p = 0; p < batch.count; ++p) {
        const uint64_t keep = batch.store[p];
        if (keep != 0) counters.macs_executed += valid * macs;
        for (int64_t l = 0; l < valid; ++l) {
          const uint8_t value = outs[p][l];
          if ((keep >> l) & 1) {
            batch.outs[p][l] = value;
          } else {
            ++(value == y_zero_point ? counters.pred_hit : counters.pred_miss);
          }
        }
      }
      batch.count = 0;
    };
    // A run's channels each go with the subset of its windows that keeps them; a subset's channels
    // gather the rest outputs of its windows together, and no predicted output is computed.
    auto flush_run = [&] {
      for (uint64_t subset = 1; subset < uint64_t{1} << run_count; ++subset) {
        uint64_t channels = mask;
        for (int64_t w = 0; w < run_count; ++w) channels &= (subset >> w & 1) ? run_keeps[w] : ~run_keeps[w];
        if (channels == 0) continue;
        int64_t count = 0;
        for (int64_t w = 0; w < run_count; ++w) {
          for (int64_t i = run_begin[w]; i < run_begin[w + 1] && (subset >> w & 1); ++i) {
            subset_rest[static_cast<size_t>(count++)] = run_rest[static_cast<size_t>(i)];
          }
        }
        GatherRest(block, channels, subset_rest, count);
      }
      run_count = 0;
    };
    for (int64_t r = r0; r < r1; ++r)
      for (size_t s = 0; s < pattern.sample_rows.size(); ++s) {
        if (pattern.sample_rows[s] != r % k_) continue;
        visit_row(r, pattern.sample_cols[s], k_, [&](QuantPixel input, uint8_t* out, int64_t window) {
          if (batch.Add(input, out, mask, window)) flush_samples();
        });
      }
    flush_samples();
    for (int64_t b = 0; b < tracked; ++b) {
      const uint64_t keep = keep_of(b, block);
      if (keep == 0 && !call_.audit) continue;  // predicted
      // The kept channels are split between the tiles (a span of the block's vectors) and the gather
      // tiles (audit computes the block, to check every predicted output).
      const int64_t rest_outputs = rests[static_cast<size_t>(b)];
      // Only windows whose rest outputs fill whole tiles split their vectors: their batches take no other
      // window's pixels, whose span of vectors may differ.
      const bool split_vectors = kSplitVectors && !call_.audit && rest_outputs % kMaxQuantPixels == 0;
      const ChannelSplit split =
          call_.audit ? ChannelSplit{keep, 0} : SplitChannels(keep, mask, valid, rest_outputs, split_vectors);
      if (split.gathered != 0) {  // a run's windows read one source (the plan's region is whole windows)
        const bool direct = call_.plan.Direct(n, window_row(b), window_column(b));
        if (run_count > 0 && direct != run_direct) flush_run();
        run_direct = direct;
        int64_t& run_end = run_begin[run_count + 1];
        run_end = run_begin[run_count];
        visit_rest(b, [&](QuantPixel input, uint8_t* out) { run_rest[static_cast<size_t>(run_end++)] = {input, out}; });
        counters.macs_executed += CountBits(split.gathered) * (run_end - run_begin[run_count]) * macs;
        run_keeps[run_count++] = split.gathered;
        if (run_count == run_windows_) flush_run();
      }
      if (split.computed != 0 || call_.audit) {
        // A batch's pixels take one span of vectors: a window computed whole would compute another's
        // gathered channels again.
        if constexpr (kSplitVectors) {  // windows that split compute only the vectors they store
          const VectorSpan span = split_vectors ? StoredVectors(split.computed, vector_lanes_) : whole;
          if (span.first_lane != rest_span.first_lane || span.end_lane != rest_span.end_lane) {
            flush_rest();
            rest_span = span;
          }
        }
        visit_rest(b, [&](QuantPixel input, uint8_t* out) {
          if (batch.Add(input, out, split.computed, b)) flush_rest();
        });
      }
    }
    flush_run();
    flush_rest();
    if (!call_.channels_last) {
      TransposeBytes(staged.data() + (block - block0) * lanes, pixel_bytes,
                     call_.output + (n * g.out_channels + first) * plane + r0 * g.out_width, plane, task_pixels, valid,
                     0);
    }
  }
  std::vector<uint64_t> masks(static_cast<size_t>(task_blocks));
  for (int64_t block = block0; block < block1; ++block) masks[static_cast<size_t>(block - block0)] = lane_mask(block);
  CountTriggered(keeps.data(), masks.data(), task_blocks, samples.data(), rests.data(), tracked, counters);
  return counters;
}

PredictionCounters QuantConv::RunTask(int64_t task) const {
  return split_vectors_ ? RunTaskWith<true>(task) : RunTaskWith<false>(task);
}

}  // namespace onnxpred
