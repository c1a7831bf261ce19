#include "operators/conv/tiled_conv.h"

#include <algorithm>
#include <vector>

namespace onnxpred {
namespace {

// Phase 2 works on chunks of this many channels of a group, so that their weights stay in L2
// while the chunk's windows are visited. A multiple of every dense block size.
constexpr int64_t kChunkChannels = 64;
constexpr int64_t kMaxTilePixels = 16;
constexpr int64_t kMaxTileChannels = 32;
// A chunk where at least this share of (window, channel) pairs is active gains nothing from
// gathering: dense tiles compute all of it and the predicted outputs are zeroed afterwards.
constexpr int64_t kDenseFallbackPercent = 90;
// A sample task spans enough bands for this many dense tiles, so that the last tile's padding
// stays a small share of the work on small feature maps.
constexpr int64_t kMinSampleTaskTiles = 4;
// Up to this many bytes of a group's dense weights (about a core's L2), a thread runs every block
// of channels over one range of bands before the next range, so the input band stays in cache;
// beyond it, one block over every range, so the block's weights do. Measured on VGG-16 shapes:
// the first wins by 5-10% up to 256->256 (2.3 MB), the second by 5-10% at 512->512 (9.4 MB).
constexpr int64_t kBlocksInnerWeightBytes = 2 << 20;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Collects pixels into a tile of `capacity`, calling `flush(count)` when it is full or finished.
template <typename Pixel>
class PixelTile {
 public:
  explicit PixelTile(int64_t capacity) : capacity_(capacity) {}
  template <typename Flush>
  void Add(const Pixel& pixel, const float* input, Flush&& flush) {
    pixels[count_] = pixel;
    inputs[count_] = input;
    if (++count_ == capacity_) Finish(flush);
  }
  template <typename Flush>
  void Finish(Flush&& flush) {
    if (count_ == 0) return;
    flush(count_);
    count_ = 0;
  }
  Pixel pixels[kMaxTilePixels];
  const float* inputs[kMaxTilePixels];

 private:
  int64_t capacity_;
  int64_t count_ = 0;
};

}  // namespace

TapLayout MakeTapLayout(const ConvGeometry& g) {
  TapLayout taps;
  const int64_t channels = g.in_channels, per_group = g.in_channels_per_group();
  taps.kernel_rows = g.kernel_h;
  taps.row_step = g.dilation_h * g.padded_width() * channels;
  if (g.dilation_w == 1 && g.group == 1) {  // a kernel row's taps are adjacent in NHWC
    taps.runs = 1;
    taps.run_length = g.kernel_w * per_group;
    taps.run_step = 0;
  } else {
    taps.runs = g.kernel_w;
    taps.run_length = per_group;
    taps.run_step = g.dilation_w * channels;
  }
  return taps;
}

std::vector<float> PackDenseWeights(const float* weights, const ConvGeometry& g, int64_t block) {
  const int64_t per_group = g.out_channels_per_group(), cg = g.in_channels_per_group();
  const int64_t blocks = CeilDiv(per_group, block), k = g.macs_per_output();
  std::vector<float> packed(static_cast<size_t>(g.group * blocks * k * block), 0.f);
  for (int64_t group = 0; group < g.group; ++group)
    for (int64_t local = 0; local < per_group; ++local) {
      const int64_t m = group * per_group + local;
      float* out = packed.data() + (group * blocks + local / block) * k * block + local % block;
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t kh = 0; kh < g.kernel_h; ++kh)
          for (int64_t kw = 0; kw < g.kernel_w; ++kw)
            out[((kh * g.kernel_w + kw) * cg + c) * block] = weights[((m * cg + c) * g.kernel_h + kh) * g.kernel_w + kw];
    }
  return packed;
}

TiledConv::TiledConv(const ConvGeometry& geometry, const ActivationParams& activation, const WindowPattern& pattern,
                     bool audit, const TileKernels& kernels, const ConvTensors& tensors, const float* dense_weights,
                     uint8_t* window_active)
    : g_(geometry),
      activation_(activation),
      pattern_(pattern),
      audit_(audit),
      kernels_(kernels),
      t_(tensors),
      dense_weights_(dense_weights),
      window_active_(window_active),
      taps_(MakeTapLayout(geometry)),
      k_(pattern.size),
      bands_(CeilDiv(geometry.out_height, pattern.size)),
      windows_(CeilDiv(geometry.out_width, pattern.size)),
      batch_bands_(geometry.batch * bands_),
      blocks_per_group_(CeilDiv(geometry.out_channels_per_group(), kernels.dense_channels)),
      chunks_per_group_(CeilDiv(geometry.out_channels_per_group(), kChunkChannels)) {
  // Small maps have few samples per band: give each sample task enough bands to fill its tiles.
  const int64_t samples_per_band = std::max<int64_t>(1, static_cast<int64_t>(pattern.sample_rows.size()) * windows_);
  bands_per_sample_task_ = std::min(bands_, CeilDiv(kMinSampleTaskTiles * kernels.dense_pixels, samples_per_band));
  sample_ranges_ = CeilDiv(bands_, bands_per_sample_task_);
  const int64_t weight_bytes = geometry.macs_per_output() * geometry.out_channels_per_group() * int64_t{sizeof(float)};
  blocks_inner_ = weight_bytes <= kBlocksInnerWeightBytes;
  if (tensors.bias == nullptr) zero_bias_.assign(static_cast<size_t>(geometry.out_channels), 0.f);
}

int64_t TiledConv::WindowActiveSize(const ConvGeometry& g, const WindowPattern& pattern) {
  return g.batch * CeilDiv(g.out_height, pattern.size) * CeilDiv(g.out_width, pattern.size) * g.out_channels;
}

const float* TiledConv::PixelInput(int64_t n, int64_t group, const Pixel& pixel) const {
  const int64_t wp = g_.padded_width();
  return t_.input_nhwc + ((n * g_.padded_height() + pixel.row * g_.stride_h) * wp + pixel.col * g_.stride_w) *
                             g_.in_channels +
         group * g_.in_channels_per_group();
}

uint8_t& TiledConv::Active(int64_t n, int64_t band, int64_t window, int64_t m) const {
  return window_active_[((n * bands_ + band) * windows_ + window) * g_.out_channels + m];
}

int64_t TiledConv::SamplesInWindow(int64_t band, int64_t window) const {
  const int64_t rows = std::min(k_, g_.out_height - band * k_), cols = std::min(k_, g_.out_width - window * k_);
  int64_t samples = 0;
  for (size_t s = 0; s < pattern_.sample_rows.size(); ++s)
    samples += pattern_.sample_rows[s] < rows && pattern_.sample_cols[s] < cols;
  return samples;
}

const float* TiledConv::DenseBlockWeights(int64_t group, int64_t block_index) const {
  return dense_weights_ + (group * blocks_per_group_ + block_index) * g_.macs_per_output() * kernels_.dense_channels;
}

template <typename Tile, typename Adjust>
void TiledConv::ComputeDenseTile(const Tile& tile, int64_t count, const float* weights, int64_t n, int64_t m0,
                                 int64_t valid, Adjust&& adjust) const {
  float sums[kMaxTilePixels * kMaxTileChannels];
  kernels_.dense[count - 1](taps_, weights, tile.inputs, sums);
  for (int64_t p = 0; p < count; ++p) {
    const Pixel& px = tile.pixels[p];
    float* values = sums + p * kernels_.dense_channels;
    FinishChannels(values, n, m0, valid, px);
    adjust(values, px);
  }
  StoreTile(sums, tile.pixels, count, n, m0, valid);
}

void TiledConv::FinishChannels(float* values, int64_t n, int64_t m0, int64_t count, const Pixel& px) const {
  // Bias first, then the residual, as in FinishOutput; adding Z before B would round differently.
  const float* bias = t_.bias ? t_.bias + m0 : zero_bias_.data();
  if (t_.residual) {
    const int64_t plane = g_.out_height * g_.out_width;
    const float* z = t_.residual + ((n * g_.out_channels + m0) * g_.out_height + px.row) * g_.out_width + px.col;
    for (int64_t j = 0; j < count; ++j) values[j] = Activate(values[j] + bias[j] + z[j * plane], activation_);
    return;
  }
  for (int64_t j = 0; j < count; ++j) values[j] = Activate(values[j] + bias[j], activation_);
}

void TiledConv::StoreTile(const float* values, const Pixel* pixels, int64_t count, int64_t n, int64_t m0,
                          int64_t channels) const {
  // Channel by channel: a pixel's channels lie a plane apart, often a multiple of 4 KiB, and
  // storing them in turn stalls on 4K aliasing; a channel's pixels share a few cache lines.
  const int64_t plane = g_.out_height * g_.out_width, block = kernels_.dense_channels;
  int64_t offsets[kMaxTilePixels];
  for (int64_t p = 0; p < count; ++p) offsets[p] = pixels[p].row * g_.out_width + pixels[p].col;
  float* y = t_.output + (n * g_.out_channels + m0) * plane;
  for (int64_t j = 0; j < channels; ++j, y += plane)
    for (int64_t p = 0; p < count; ++p) y[offsets[p]] = values[p * block + j];
}

template <typename Visit>
void TiledConv::ForEachRestPixel(int64_t band, int64_t window, Visit&& visit) const {
  const int64_t r0 = band * k_, c0 = window * k_;
  const int64_t rows = std::min(k_, g_.out_height - r0), cols = std::min(k_, g_.out_width - c0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (!pattern_.is_sample[static_cast<size_t>(i * k_ + j)]) visit(Pixel{r0 + i, c0 + j, band, window});
}

PredictionCounters TiledConv::RunSampleTask(int64_t task) const {
  // A thread's consecutive tasks share either their input bands or their block of weights.
  const int64_t ranges = g_.batch * sample_ranges_;
  const int64_t block_index = blocks_inner_ ? task % blocks_per_group_ : task / ranges % blocks_per_group_;
  const int64_t batch_range = blocks_inner_ ? task / blocks_per_group_ % ranges : task % ranges;
  const int64_t group = task / ranges / blocks_per_group_;
  const int64_t n = batch_range / sample_ranges_;
  const int64_t band_begin = batch_range % sample_ranges_ * bands_per_sample_task_;
  const int64_t band_end = std::min(bands_, band_begin + bands_per_sample_task_);
  const int64_t block = kernels_.dense_channels, per_group = g_.out_channels_per_group();
  const int64_t m0 = group * per_group + block_index * block;
  const int64_t valid = std::min(block, per_group - block_index * block);
  const float* weights = DenseBlockWeights(group, block_index);
  int64_t computed = 0;
  for (int64_t band = band_begin; band < band_end; ++band)  // this task alone marks these pairs
    for (int64_t window = 0; window < windows_; ++window) std::fill_n(&Active(n, band, window, m0), valid, 0);

  PixelTile<Pixel> tile(kernels_.dense_pixels);
  auto flush = [&](int64_t count) {
    ComputeDenseTile(tile, count, weights, n, m0, valid, [&](const float* values, const Pixel& px) {
      uint8_t* __restrict active = &Active(n, px.band, px.window, m0);
      for (int64_t j = 0; j < valid; ++j) active[j] |= static_cast<uint8_t>(!(values[j] == 0.f));  // NaN: non-zero
    });
    computed += count * valid;
  };
  for (int64_t band = band_begin; band < band_end; ++band) {
    for (int64_t window = 0; window < windows_; ++window) {
      for (size_t s = 0; s < pattern_.sample_rows.size(); ++s) {
        const Pixel px{band * k_ + pattern_.sample_rows[s], window * k_ + pattern_.sample_cols[s], band, window};
        if (px.row < g_.out_height && px.col < g_.out_width) tile.Add(px, PixelInput(n, group, px), flush);
      }
    }
  }
  tile.Finish(flush);
  PredictionCounters counters;
  counters.macs_executed = computed * g_.macs_per_output();
  return counters;
}

PredictionCounters TiledConv::RunRestTask(int64_t task) const {
  const int64_t batch_band = task % batch_bands_;
  const int64_t chunk = task / batch_bands_ % chunks_per_group_;
  const int64_t group = task / batch_bands_ / chunks_per_group_;
  const int64_t n = batch_band / bands_, band = batch_band % bands_;
  const int64_t per_group = g_.out_channels_per_group();
  const int64_t m_begin = group * per_group + chunk * kChunkChannels;
  const int64_t m_end = group * per_group + std::min(per_group, (chunk + 1) * kChunkChannels);

  PredictionCounters counters;
  int64_t active_pairs = 0;
  for (int64_t window = 0; window < windows_; ++window) {
    const int64_t samples = SamplesInWindow(band, window);
    const int64_t area = std::min(k_, g_.out_height - band * k_) * std::min(k_, g_.out_width - window * k_);
    const uint8_t* active = &Active(n, band, window, m_begin);
    int64_t window_active = 0;  // a plain sum of 0/1 bytes, which the compiler vectorises
    for (int64_t j = 0; j < m_end - m_begin; ++j) window_active += active[j];
    const int64_t inactive = m_end - m_begin - window_active;
    active_pairs += window_active;
    counters.zero_diag += inactive * samples;
    counters.predicted += inactive * (area - samples);
  }
  int64_t computed = 0;
  const bool gathering_pays = taps_.run_length >= 2 * kernels_.lanes &&
                              active_pairs * 100 < kDenseFallbackPercent * windows_ * (m_end - m_begin);
  if (gathering_pays) {
    RunRestGathered(n, band, group, m_begin, m_end, counters, computed);
  } else {
    RunRestDense(n, band, group, m_begin, m_end, counters, computed);
  }
  counters.macs_executed = computed * g_.macs_per_output();
  return counters;
}

void TiledConv::RunRestDense(int64_t n, int64_t band, int64_t group, int64_t m_begin, int64_t m_end,
                             PredictionCounters& counters, int64_t& computed) const {
  const int64_t block = kernels_.dense_channels;
  for (int64_t m0 = m_begin; m0 < m_end; m0 += block) {
    const int64_t valid = std::min(block, m_end - m0);
    const float* weights = DenseBlockWeights(group, (m0 - group * g_.out_channels_per_group()) / block);
    PixelTile<Pixel> tile(kernels_.dense_pixels);
    auto flush = [&](int64_t count) {
      ComputeDenseTile(tile, count, weights, n, m0, valid, [&](float* values, const Pixel& px) {
        const uint8_t* active = &Active(n, band, px.window, m0);
        if (audit_) {
          for (int64_t j = 0; j < valid; ++j) {
            if (!active[j]) ++(values[j] == 0.f ? counters.pred_hit : counters.pred_miss);
          }
        }
        for (int64_t j = 0; j < valid; ++j) values[j] = active[j] ? values[j] : 0.f;  // predicted: zeroed
      });
      computed += count * valid;
    };
    for (int64_t window = 0; window < windows_; ++window)
      ForEachRestPixel(band, window, [&](const Pixel& px) { tile.Add(px, PixelInput(n, group, px), flush); });
    tile.Finish(flush);
  }
}

void TiledConv::RunRestGathered(int64_t n, int64_t band, int64_t group, int64_t m_begin, int64_t m_end,
                                PredictionCounters& counters, int64_t& computed) const {
  const int64_t tile_channels = kernels_.gather_channels, tile_pixels = kernels_.gather_pixels;
  const int64_t k = g_.macs_per_output(), plane = g_.out_height * g_.out_width;
  float* y = t_.output + n * g_.out_channels * plane;
  const float* z = t_.residual ? t_.residual + n * g_.out_channels * plane : nullptr;
  int64_t active[kChunkChannels];
  const float* weights[kMaxTileChannels];
  // Zeroed once: the flat finish loops also pass over the slots a short tile leaves unwritten.
  float sums[kMaxTilePixels * kMaxTileChannels] = {}, bias[kMaxTilePixels * kMaxTileChannels];
  const size_t window_outputs = static_cast<size_t>(std::min(k_, g_.out_height) * std::min(k_, g_.out_width));
  std::vector<Pixel> rest(window_outputs);
  std::vector<int64_t> rest_offsets(window_outputs);  // row * oW + col of each rest pixel
  for (int64_t window = 0; window < windows_; ++window) {
    int64_t rest_count = 0;
    ForEachRestPixel(band, window, [&](const Pixel& px) {
      rest_offsets[static_cast<size_t>(rest_count)] = px.row * g_.out_width + px.col;
      rest[static_cast<size_t>(rest_count++)] = px;
    });
    int64_t active_count = 0;
    for (int64_t m = m_begin; m < m_end; ++m) {
      if (Active(n, band, window, m)) {
        active[active_count++] = m;
        continue;
      }
      float* y_m = y + m * plane;
      for (int64_t r = 0; r < rest_count; ++r) y_m[rest_offsets[static_cast<size_t>(r)]] = 0.f;
      if (audit_) {
        for (int64_t r = 0; r < rest_count; ++r) {
          const Pixel& px = rest[static_cast<size_t>(r)];
          const float v = EvaluateOutput(g_, activation_, t_, n, m, px.row, px.col);
          ++(v == 0.f ? counters.pred_hit : counters.pred_miss);
        }
      }
    }
    for (int64_t first_pixel = 0; first_pixel < rest_count && active_count > 0; first_pixel += tile_pixels) {
      const int64_t count = std::min(tile_pixels, rest_count - first_pixel);
      const float* inputs[kMaxTilePixels];
      for (int64_t p = 0; p < count; ++p) inputs[p] = PixelInput(n, group, rest[static_cast<size_t>(first_pixel + p)]);
      const int64_t* offsets = rest_offsets.data() + first_pixel;
      for (int64_t first = 0; first < active_count; first += tile_channels) {
        const int64_t channels = std::min(tile_channels, active_count - first);
        for (int64_t i = 0; i < channels; ++i) weights[i] = t_.packed_weights + active[first + i] * k;
        kernels_.gather[channels - 1][count - 1](taps_, weights, inputs, sums);
        // act(sum + B + Z) over the whole tile in one flat loop the compiler vectorises; the stores
        // then scatter to the channels' planes.
        const int64_t values = channels * tile_pixels;
        for (int64_t i = 0; i < channels; ++i) {
          const float b = t_.bias ? t_.bias[active[first + i]] : 0.f;
          for (int64_t p = 0; p < tile_pixels; ++p) bias[i * tile_pixels + p] = b;
        }
        for (int64_t v = 0; v < values; ++v) sums[v] += bias[v];
        if (z) {
          for (int64_t i = 0; i < channels; ++i)
            for (int64_t p = 0; p < count; ++p) sums[i * tile_pixels + p] += z[active[first + i] * plane + offsets[p]];
        }
        for (int64_t v = 0; v < values; ++v) sums[v] = Activate(sums[v], activation_);
        for (int64_t i = 0; i < channels; ++i) {
          float* y_m = y + active[first + i] * plane;
          for (int64_t p = 0; p < count; ++p) y_m[offsets[p]] = sums[i * tile_pixels + p];
        }
        computed += channels * count;
      }
    }
  }
}

}  // namespace onnxpred
