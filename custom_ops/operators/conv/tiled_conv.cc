#include "operators/conv/tiled_conv.h"

#include <algorithm>
#include <vector>

namespace onnxpred {
namespace {

// Phase 2 works on chunks of channels of a group, so that their weights stay in L2 while the
// chunk's windows are visited: kMaxChunkChannels where their weights take at most
// kChunkWeightBytes, else kMinChunkChannels. More channels make larger groups of channels that
// share a run's windows (fewer short gather tiles): 128 against 64 channels ran 1-2% faster at
// k = 2 on 128-channel 3x3 layers (576 KiB of weights) and no faster at 256 (1.1 MiB); 32 at 512
// input channels (to fit L2) ran no faster either. Multiples of every dense block size.
constexpr int64_t kMinChunkChannels = 64;
constexpr int64_t kMaxChunkChannels = 128;
constexpr int64_t kChunkWeightBytes = 640 << 10;
constexpr int64_t kMaxTilePixels = 16;
constexpr int64_t kMaxTileChannels = 32;
// Phase 2 gathers the rest outputs of up to this many windows into shared tiles (3 at k = 2).
constexpr int64_t kMaxRunWindows = 3;
// A gathered output costs its K / lanes vector FMAs plus about this many more (its horizontal sum,
// finish and scattered store); a dense one only the FMAs. So a chunk gathers only while its share
// of active (window, channel) pairs is below (K / lanes) / (K / lanes + this), and never above
// kMaxGatherPercent (dense tiles run closer to peak): 90% at K = 2304 (AVX-512), 84% at K = 1152,
// 72% at K = 576, 46% for a 1x1 with K = 192. Measured since the gather tiles finish their own
// outputs, with 30% of pairs predicted: 14 ran the 64-channel 3x3 shapes of VGG-16 and ResNet-18
// 2-8% faster than 16 (dense there); 8 ran Lite0's 7x7 1x1 layers (K = 192, 320) 4-7% slower at
// 30-50% predicted, 12 one of its 56x56 layers 7% slower at k = 3.
constexpr int64_t kHorizontalSumCost = 14;
constexpr int64_t kMaxGatherPercent = 90;
// A gather tile vectorises each run of the reduction; a run shorter than this many vectors (a
// 3-channel stem's 9 floats) leaves its lanes mostly empty: such a layer is computed in one dense
// pass instead.
constexpr int64_t kMinGatherRunVectors = 2;
// A sample task spans enough bands for this many dense tiles, so that the last tile's padding
// stays a small share of the work on small feature maps.
constexpr int64_t kMinSampleTaskTiles = 4;
// Up to this many bytes of a group's dense weights (about a core's L2), a thread runs every block
// of channels over one range of bands before the next range, so the input band stays in cache;
// beyond it, one block over every range, so the block's weights do. Measured on VGG-16 shapes:
// the first wins by 5-10% up to 256->256 (2.3 MB), the second by 5-10% at 512->512 (9.4 MB).
constexpr int64_t kBlocksInnerWeightBytes = 2 << 20;

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
  const int64_t pixel = NhwcPixelFloats(g), per_group = g.in_channels_per_group();
  taps.kernel_rows = g.kernel_h;
  taps.row_step = g.dilation_h * g.padded_width() * pixel;
  if (g.dilation_w == 1 && g.group == 1 && pixel == g.in_channels) {  // a kernel row's taps are adjacent in NHWC
    taps.runs = 1;
    taps.run_length = g.kernel_w * per_group;
    taps.run_step = 0;
  } else {
    taps.runs = g.kernel_w;
    taps.run_length = per_group;
    taps.run_step = g.dilation_w * pixel;
  }
  return taps;
}

PackedFloats PackDenseWeights(const float* weights, const ConvGeometry& g, int64_t block) {
  const int64_t per_group = g.out_channels_per_group(), cg = g.in_channels_per_group();
  const int64_t blocks = CeilDiv(per_group, block), k = g.macs_per_output();
  PackedFloats packed(static_cast<size_t>(g.group * blocks * k * block), 0.f);
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

TiledConv::TiledConv(const ConvCall& call, const TileKernels& kernels, const float* dense_weights)
    : ConvCall(call),
      kernels_(kernels),
      dense_weights_(dense_weights),
      taps_(MakeTapLayout(geometry)),
      k_(pattern.size),
      bands_(CeilDiv(geometry.out_height, pattern.size)),
      windows_(CeilDiv(geometry.out_width, pattern.size)),
      blocks_per_group_(CeilDiv(geometry.out_channels_per_group(), kernels.dense_channels)),
      chunk_channels_(geometry.macs_per_output() * kMaxChunkChannels * int64_t{sizeof(float)} <= kChunkWeightBytes
                          ? kMaxChunkChannels
                          : kMinChunkChannels),
      chunks_per_group_(CeilDiv(geometry.out_channels_per_group(), chunk_channels_)) {
  every_output_in_samples_ = taps_.run_length < kMinGatherRunVectors * kernels.lanes && !pattern.SamplesEverything();
  // Small maps have few samples per band: give each sample task enough bands to fill its tiles.
  const int64_t computed_per_window =
      every_output_in_samples_ ? k_ * k_ : static_cast<int64_t>(pattern.sample_rows.size());
  const int64_t samples_per_band = std::max<int64_t>(1, computed_per_window * windows_);
  bands_per_sample_task_ = std::min(bands_, CeilDiv(kMinSampleTaskTiles * kernels.dense_pixels, samples_per_band));
  sample_ranges_ = CeilDiv(bands_, bands_per_sample_task_);
  // A window with fewer rest outputs than a tile's pixels (2 at k = 2) would load each weight for
  // them alone, and the weights stream from L2: runs of windows share their gather tiles instead.
  const int64_t full_window_rest = k_ * k_ - static_cast<int64_t>(pattern.sample_rows.size());
  run_windows_ = std::clamp<int64_t>(kernels.gather_pixels / std::max<int64_t>(1, full_window_rest), 1, kMaxRunWindows);
  const int64_t runs_per_band = CeilDiv(windows_, run_windows_);
  int64_t rest_outputs = 0;
  for (int64_t band = 0; band < bands_; ++band)
    for (int64_t window = 0; window < windows_; ++window) {
      rest_outputs += BandRows(band) * WindowColumns(window) - SamplesInWindow(band, window);
    }
  // A map small enough for one sample task to cover all its bands (7x7) has one rest task a
  // chunk: a band's few rest outputs (7 at k = 2) would fill half a dense tile, and the chunk's
  // weights would stream again for each band. Larger maps keep a band a task, so that threads
  // share many tasks.
  bands_per_rest_task_ = sample_ranges_ == 1 ? bands_ : 1;
  rest_ranges_ = CeilDiv(bands_, bands_per_rest_task_);
  // A gather tile loads its channels' weights for the rest outputs of one run; where clipped
  // windows leave the runs fewer on average than a full run's, each output bears more of those
  // loads. On 7x7 maps (ResNet-18's layer4: about 3 rest outputs a run at k = 2 against 6, 3.6 at
  // k = 3) gathering half the pairs ran 4-21% slower than dense tiles over all of them; on 13x13
  // and 14x14 maps (4-4.7) 4-30% faster, as this cost predicts.
  const double rest_per_run = static_cast<double>(rest_outputs) / static_cast<double>(bands_ * runs_per_band);
  if (rest_outputs > 0)  // else nothing is gathered (window 1)
    short_run_cost_ = std::max(1.0, static_cast<double>(run_windows_ * full_window_rest) / rest_per_run);
  const int64_t weight_bytes = geometry.macs_per_output() * geometry.out_channels_per_group() * int64_t{sizeof(float)};
  blocks_inner_ = weight_bytes <= kBlocksInnerWeightBytes;
  const int64_t blocks = geometry.group * blocks_per_group_, block = kernels.dense_channels;
  block_bias_.assign(static_cast<size_t>(blocks * block), 0.f);
  for (int64_t m = 0; tensors.bias != nullptr && m < geometry.out_channels; ++m) {
    const int64_t group = m / geometry.out_channels_per_group(), local = m % geometry.out_channels_per_group();
    block_bias_[static_cast<size_t>((group * blocks_per_group_ + local / block) * block + local % block)] = tensors.bias[m];
  }
  // Not initialised: each sample task clears the words it marks before any rest task reads them.
  if (RecordsTriggers())
    block_active_.reset(new uint32_t[static_cast<size_t>(geometry.batch * bands_ * windows_ * blocks)]);
}

const float* TiledConv::PixelInput(int64_t n, int64_t group, const Pixel& pixel) const {
  const int64_t row = n * geometry.padded_height() + pixel.row * geometry.stride_h;
  const int64_t column = pixel.col * geometry.stride_w;
  return tensors.input_nhwc + (row * geometry.padded_width() + column) * NhwcPixelFloats(geometry) +
         group * geometry.in_channels_per_group();
}

uint32_t& TiledConv::ActiveLanes(int64_t n, int64_t band, int64_t window, int64_t group, int64_t block_index) const {
  const int64_t window_index = (n * bands_ + band) * windows_ + window;
  return block_active_[static_cast<size_t>((window_index * geometry.group + group) * blocks_per_group_ + block_index)];
}

int64_t TiledConv::BlockChannels(int64_t block_index) const {
  return std::min(kernels_.dense_channels, geometry.out_channels_per_group() - block_index * kernels_.dense_channels);
}

int64_t TiledConv::SamplesInWindow(int64_t band, int64_t window) const {
  const int64_t rows = BandRows(band), cols = WindowColumns(window);
  int64_t samples = 0;
  for (size_t s = 0; s < pattern.sample_rows.size(); ++s)
    samples += pattern.sample_rows[s] < rows && pattern.sample_cols[s] < cols;
  return samples;
}

const float* TiledConv::DenseBlockWeights(int64_t group, int64_t block_index) const {
  const int64_t block = group * blocks_per_group_ + block_index;
  return dense_weights_ + block * geometry.macs_per_output() * kernels_.dense_channels;
}

template <typename Tile>
void TiledConv::ComputeDenseTile(const Tile& tile, int64_t count, int64_t n, int64_t group, int64_t block_index,
                                 uint32_t* const* marks, const uint32_t* keeps, PredictionCounters& counters) const {
  const int64_t block = kernels_.dense_channels, channels = BlockChannels(block_index);
  const int64_t m0 = group * geometry.out_channels_per_group() + block_index * block;
  const int64_t plane = geometry.out_height * geometry.out_width;
  int64_t offsets[kMaxTilePixels];
  for (int64_t p = 0; p < count; ++p) offsets[p] = tile.pixels[p].row * geometry.out_width + tile.pixels[p].col;
  // Window 1 and the single-pass layers visit outputs row by row: their tiles' pixels are usually
  // consecutive in every plane, and Z and Y transpose in registers.
  bool consecutive = count > 1;
  for (int64_t p = 1; p < count; ++p) consecutive &= offsets[p] == offsets[0] + p;
  DenseTileEpilogue epilogue;
  epilogue.bias = block_bias_.data() + (group * blocks_per_group_ + block_index) * block;
  epilogue.residual = tensors.residual ? tensors.residual + (n * geometry.out_channels + m0) * plane : nullptr;
  epilogue.plane = plane;
  epilogue.offsets = offsets;
  epilogue.consecutive = consecutive;
  epilogue.clip_max = activation.clip_max;
  epilogue.threshold = -margin;
  epilogue.marks = marks;
  epilogue.keeps = keeps;
  float sums[kMaxTilePixels * kMaxTileChannels];
  kernels_.dense[count - 1](taps_, DenseBlockWeights(group, block_index), tile.inputs, sums);
  int64_t hits = 0, misses = 0;
  kernels_.dense_epilogue(sums, count, channels, epilogue, hits, misses);
  if (audit) {
    counters.pred_hit += hits;
    counters.pred_miss += misses;
  }
  float* y = tensors.output + (n * geometry.out_channels + m0) * plane;
  if (consecutive) {
    kernels_.pixels_to_channels(sums, count, channels, y + offsets[0], plane);
  } else if (kernels_.store_row_groups) {
    kernels_.store_row_groups(sums, count, channels, GroupByRows(tile.pixels, offsets, count), y, plane);
  } else {
    StoreTile(sums, offsets, count, channels, y, plane);
  }
}

TileRowGroups TiledConv::GroupByRows(const Pixel* pixels, const int64_t* offsets, int64_t count) const {
  TileRowGroups groups;
  int64_t rows[kMaxTilePixels], first_columns[kMaxTilePixels];
  for (int64_t p = 0; p < count; ++p) {
    const Pixel& px = pixels[p];
    int64_t g = 0;
    while (g < groups.count &&
           !(rows[g] == px.row && px.col >= first_columns[g] && px.col < first_columns[g] + kRowGroupColumns))
      ++g;
    if (g == groups.count) {
      rows[g] = px.row;
      first_columns[g] = px.col;
      groups.offsets[g] = offsets[p];
      groups.columns[g] = 0;
      std::fill(groups.sources[g], groups.sources[g] + kRowGroupColumns, 0);
      ++groups.count;
    }
    groups.columns[g] |= uint32_t{1} << (px.col - first_columns[g]);
    groups.sources[g][px.col - first_columns[g]] = static_cast<int32_t>(p);
  }
  return groups;
}

void TiledConv::StoreTile(const float* values, const int64_t* offsets, int64_t count, int64_t channels, float* y,
                          int64_t plane) const {
  // Channel by channel: a pixel's channels lie a plane apart, often a multiple of 4 KiB, and
  // storing them in turn stalls on 4K aliasing; a channel's pixels share a few cache lines.
  const int64_t block = kernels_.dense_channels;
  for (int64_t j = 0; j < channels; ++j, y += plane)
    for (int64_t p = 0; p < count; ++p) y[offsets[p]] = values[p * block + j];
}

template <typename Visit>
void TiledConv::ForEachRestPixel(int64_t band, int64_t window, Visit&& visit) const {
  const int64_t r0 = band * k_, c0 = window * k_;
  const int64_t rows = BandRows(band), cols = WindowColumns(window);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (!pattern.is_sample[static_cast<size_t>(i * k_ + j)]) visit(Pixel{r0 + i, c0 + j, band, window});
}

PredictionCounters TiledConv::RunSampleTask(int64_t task) const {
  // A thread's consecutive tasks share either their input bands or their block of weights.
  const int64_t ranges = geometry.batch * sample_ranges_;
  const int64_t block_index = blocks_inner_ ? task % blocks_per_group_ : task / ranges % blocks_per_group_;
  const int64_t batch_range = blocks_inner_ ? task / blocks_per_group_ % ranges : task % ranges;
  const int64_t group = task / ranges / blocks_per_group_;
  const int64_t n = batch_range / sample_ranges_;
  const int64_t band_begin = batch_range % sample_ranges_ * bands_per_sample_task_;
  const int64_t band_end = std::min(bands_, band_begin + bands_per_sample_task_);
  // This task alone marks these pairs. A window with no sample inside the plane is never predicted:
  // all its lanes start active.
  const bool records = RecordsTriggers();
  const uint32_t all_lanes = static_cast<uint32_t>((uint64_t{1} << BlockChannels(block_index)) - 1);
  for (int64_t band = band_begin; records && band < band_end; ++band)
    for (int64_t window = 0; window < windows_; ++window)
      ActiveLanes(n, band, window, group, block_index) = SamplesInWindow(band, window) > 0 ? 0 : all_lanes;

  PredictionCounters counters;
  int64_t computed = 0;
  PixelTile<Pixel> tile(kernels_.dense_pixels);
  uint32_t unmarked = 0;  // where the rest outputs of a single pass mark: read by nothing
  auto flush = [&](int64_t count) {
    uint32_t* marks[kMaxTilePixels];
    for (int64_t p = 0; records && p < count; ++p) {
      const Pixel& px = tile.pixels[p];
      const int64_t offset = (px.row - px.band * k_) * k_ + px.col - px.window * k_;
      const bool sample = !every_output_in_samples_ || pattern.is_sample[static_cast<size_t>(offset)];
      marks[p] = sample ? &ActiveLanes(n, px.band, px.window, group, block_index) : &unmarked;
    }
    ComputeDenseTile(tile, count, n, group, block_index, records ? marks : nullptr, nullptr, counters);
    computed += count * BlockChannels(block_index);
  };
  if (every_output_in_samples_) {
    // Row by row, so that a tile's pixels are neighbours; only the samples mark their window.
    for (int64_t band = band_begin; band < band_end; ++band)
      for (int64_t i = 0; i < BandRows(band); ++i)
        for (int64_t window = 0; window < windows_; ++window)
          for (int64_t j = 0; j < WindowColumns(window); ++j) {
            const Pixel px{band * k_ + i, window * k_ + j, band, window};
            tile.Add(px, PixelInput(n, group, px), flush);
          }
  } else {
    for (int64_t band = band_begin; band < band_end; ++band) {
      for (int64_t window = 0; window < windows_; ++window) {
        for (size_t s = 0; s < pattern.sample_rows.size(); ++s) {
          const Pixel px{band * k_ + pattern.sample_rows[s], window * k_ + pattern.sample_cols[s], band, window};
          if (px.row >= geometry.out_height || px.col >= geometry.out_width) continue;
          tile.Add(px, PixelInput(n, group, px), flush);
        }
      }
    }
  }
  tile.Finish(flush);
  if (every_output_in_samples_) counters += ZeroPredictedRest(n, group, block_index, band_begin, band_end);
  counters.macs_executed = computed * geometry.macs_per_output();
  return counters;
}

PredictionCounters TiledConv::ZeroPredictedRest(int64_t n, int64_t group, int64_t block_index, int64_t band_begin,
                                                int64_t band_end) const {
  const int64_t plane = geometry.out_height * geometry.out_width;
  const int64_t m0 = group * geometry.out_channels_per_group() + block_index * kernels_.dense_channels;
  float* y = tensors.output + (n * geometry.out_channels + m0) * plane;
  const uint32_t all_lanes = static_cast<uint32_t>((uint64_t{1} << BlockChannels(block_index)) - 1);
  PredictionCounters counters;
  std::vector<int64_t> rest_offsets;  // row * oW + col of one window's rest outputs
  for (int64_t band = band_begin; band < band_end; ++band) {
    for (int64_t window = 0; window < windows_; ++window) {
      uint32_t predicted = ~ActiveLanes(n, band, window, group, block_index) & all_lanes;
      if (predicted == 0) continue;
      rest_offsets.clear();
      ForEachRestPixel(band, window,
                       [&](const Pixel& px) { rest_offsets.push_back(px.row * geometry.out_width + px.col); });
      for (; predicted != 0; predicted &= predicted - 1) {
        float* y_m = y + __builtin_ctz(predicted) * plane;
        for (const int64_t offset : rest_offsets) {
          if (audit) ++(y_m[offset] == 0.f ? counters.pred_hit : counters.pred_miss);
          y_m[offset] = 0.f;
        }
      }
    }
  }
  return counters;
}

PredictionCounters TiledConv::RunRestTask(int64_t task) const {
  const int64_t ranges = geometry.batch * rest_ranges_;
  const int64_t batch_range = task % ranges;
  const int64_t chunk = task / ranges % chunks_per_group_;
  const int64_t group = task / ranges / chunks_per_group_;
  const int64_t n = batch_range / rest_ranges_;
  const int64_t first_band = batch_range % rest_ranges_ * bands_per_rest_task_;
  const Bands bands{first_band, std::min(bands_, first_band + bands_per_rest_task_)};
  const int64_t per_group = geometry.out_channels_per_group();
  const int64_t m_begin = group * per_group + chunk * chunk_channels_;
  const int64_t m_end = group * per_group + std::min(per_group, (chunk + 1) * chunk_channels_);
  const int64_t block_begin = chunk * chunk_channels_ / kernels_.dense_channels;
  const int64_t block_end = block_begin + CeilDiv(m_end - m_begin, kernels_.dense_channels);

  PredictionCounters counters;
  int64_t active_pairs = 0;
  for (int64_t band = bands.begin; band < bands.end; ++band) {
    for (int64_t window = 0; window < windows_; ++window) {
      const int64_t samples = SamplesInWindow(band, window);
      const int64_t area = BandRows(band) * WindowColumns(window);
      int64_t window_active = 0;
      for (int64_t b = block_begin; b < block_end; ++b)
        window_active += __builtin_popcount(ActiveLanes(n, band, window, group, b));
      const int64_t inactive = m_end - m_begin - window_active;
      active_pairs += window_active;
      counters.zero_diag += inactive * samples;
      counters.predicted += inactive * (area - samples);
    }
  }
  // Every output is a sample (window 1, or a pattern that fills the window), or the sample tasks
  // computed every output: nothing is left.
  if (every_output_in_samples_ || pattern.SamplesEverything()) return counters;
  int64_t computed = 0;
  if (GatheringPays(active_pairs, (bands.end - bands.begin) * windows_ * (m_end - m_begin))) {
    for (int64_t band = bands.begin; band < bands.end; ++band)
      RunRestGathered(n, band, group, block_begin, block_end, counters, computed);
  } else {
    RunRestDense(n, bands, group, block_begin, block_end, counters, computed);
  }
  counters.macs_executed = computed * geometry.macs_per_output();
  return counters;
}

bool TiledConv::GatheringPays(int64_t active_pairs, int64_t pairs) const {
  const double active = static_cast<double>(active_pairs) / static_cast<double>(pairs);
  const double steps = static_cast<double>(geometry.macs_per_output()) / static_cast<double>(kernels_.lanes);
  return active * 100 < kMaxGatherPercent && active * (steps * short_run_cost_ + kHorizontalSumCost) < steps;
}

void TiledConv::RunRestDense(int64_t n, Bands bands, int64_t group, int64_t block_begin, int64_t block_end,
                             PredictionCounters& counters, int64_t& computed) const {
  for (int64_t block_index = block_begin; block_index < block_end; ++block_index) {
    PixelTile<Pixel> tile(kernels_.dense_pixels);
    auto flush = [&](int64_t count) {
      uint32_t keeps[kMaxTilePixels];
      for (int64_t p = 0; p < count; ++p) {
        const Pixel& px = tile.pixels[p];
        keeps[p] = ActiveLanes(n, px.band, px.window, group, block_index);
      }
      ComputeDenseTile(tile, count, n, group, block_index, nullptr, keeps, counters);
      computed += count * BlockChannels(block_index);
    };
    for (int64_t band = bands.begin; band < bands.end; ++band)
      for (int64_t window = 0; window < windows_; ++window)
        ForEachRestPixel(band, window, [&](const Pixel& px) { tile.Add(px, PixelInput(n, group, px), flush); });
    tile.Finish(flush);
  }
}

void TiledConv::RunRestGathered(int64_t n, int64_t band, int64_t group, int64_t block_begin, int64_t block_end,
                                PredictionCounters& counters, int64_t& computed) const {
  const int64_t tile_channels = kernels_.gather_channels, tile_pixels = kernels_.gather_pixels;
  const int64_t k = geometry.macs_per_output(), plane = geometry.out_height * geometry.out_width;
  float* y = tensors.output + n * geometry.out_channels * plane;
  const float* z = tensors.residual ? tensors.residual + n * geometry.out_channels * plane : nullptr;
  // Each channel of the chunk goes with the subset of a run's windows it keeps active, and the
  // channels of one subset gather that subset's rest outputs together.
  int64_t subset_channels[1 << kMaxRunWindows][kMaxChunkChannels];
  const float* weights[kMaxGatherChannels];
  float bias[kMaxGatherChannels], *rows[kMaxGatherChannels];
  const float* residuals[kMaxGatherChannels];
  const size_t run_outputs =
      static_cast<size_t>(run_windows_ * std::min(k_, geometry.out_height) * std::min(k_, geometry.out_width));
  std::vector<Pixel> rest(run_outputs);
  std::vector<int64_t> rest_offsets(run_outputs);  // row * oW + col of each rest pixel
  std::vector<int64_t> subset_rest(run_outputs);   // the rest pixels of a subset's windows
  for (int64_t first_window = 0; first_window < windows_; first_window += run_windows_) {
    const int64_t run = std::min(run_windows_, windows_ - first_window);
    int64_t window_rest[kMaxRunWindows + 1];  // window w's rest pixels: [window_rest[w], window_rest[w + 1])
    int64_t rest_count = 0;
    for (int64_t w = 0; w < run; ++w) {
      window_rest[w] = rest_count;
      ForEachRestPixel(band, first_window + w, [&](const Pixel& px) {
        rest_offsets[static_cast<size_t>(rest_count)] = px.row * geometry.out_width + px.col;
        rest[static_cast<size_t>(rest_count++)] = px;
      });
    }
    window_rest[run] = rest_count;
    int64_t subset_count[1 << kMaxRunWindows] = {};
    for (int64_t b = block_begin; b < block_end; ++b) {
      const int64_t m0 = group * geometry.out_channels_per_group() + b * kernels_.dense_channels;
      uint32_t lanes[kMaxRunWindows];
      for (int64_t w = 0; w < run; ++w) lanes[w] = ActiveLanes(n, band, first_window + w, group, b);
      for (int64_t j = 0; j < BlockChannels(b); ++j) {
        int64_t subset = 0;
        for (int64_t w = 0; w < run; ++w) subset |= int64_t{lanes[w] >> j & 1} << w;
        subset_channels[subset][subset_count[subset]++] = m0 + j;
      }
    }
    for (int64_t subset = 0; subset < int64_t{1} << run; ++subset) {
      const int64_t* channel_list = subset_channels[subset];
      const int64_t active_count = subset_count[subset];
      int64_t count_in_subset = 0;
      for (int64_t w = 0; w < run; ++w) {
        if (subset >> w & 1) {
          for (int64_t r = window_rest[w]; r < window_rest[w + 1]; ++r)
            subset_rest[static_cast<size_t>(count_in_subset++)] = r;
          continue;
        }
        for (int64_t i = 0; i < active_count; ++i) {  // predicted zero in this window
          const int64_t m = channel_list[i];
          float* y_m = y + m * plane;
          for (int64_t r = window_rest[w]; r < window_rest[w + 1]; ++r) y_m[rest_offsets[static_cast<size_t>(r)]] = 0.f;
          if (audit) {
            for (int64_t r = window_rest[w]; r < window_rest[w + 1]; ++r) {
              const Pixel& px = rest[static_cast<size_t>(r)];
              const float v = EvaluateOutput(geometry, activation, tensors, n, m, px.row, px.col);
              ++(v == 0.f ? counters.pred_hit : counters.pred_miss);
            }
          }
        }
      }
      for (int64_t first_pixel = 0; first_pixel < count_in_subset && active_count > 0; first_pixel += tile_pixels) {
        const int64_t count = std::min(tile_pixels, count_in_subset - first_pixel);
        const float* inputs[kMaxTilePixels];
        int64_t offsets[kMaxTilePixels];
        for (int64_t p = 0; p < count; ++p) {
          const size_t r = static_cast<size_t>(subset_rest[static_cast<size_t>(first_pixel + p)]);
          inputs[p] = PixelInput(n, group, rest[r]);
          offsets[p] = rest_offsets[r];
        }
        const GatherTileEpilogue epilogue{bias, rows, z ? residuals : nullptr, offsets, activation.clip_max};
        for (int64_t first = 0; first < active_count; first += tile_channels) {
          const int64_t channels = std::min(tile_channels, active_count - first);
          for (int64_t i = 0; i < channels; ++i) {
            const int64_t m = channel_list[first + i];
            weights[i] = tensors.packed_weights + m * k;
            bias[i] = tensors.bias ? tensors.bias[m] : 0.f;
            rows[i] = y + m * plane;
            if (z) residuals[i] = z + m * plane;
          }
          kernels_.gather[channels - 1][count - 1](taps_, weights, inputs, epilogue);
          computed += channels * count;
        }
      }
    }
  }
}

}  // namespace onnxpred
