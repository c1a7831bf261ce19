// Register-blocked micro-kernels of the convolution, one table per instruction set, chosen at run
// time (ONNXPRED_KERNEL=auto|avx512|avx2|portable forces one).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "operators/conv/conv_geometry.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

// How a tile walks the reduction K = (C/group) * kH * kW over the zero-padded NHWC input:
// kernel rows, then `runs` per row of `run_length` floats that are contiguous in both the input
// and the packed weights (a whole kernel row when taps are adjacent, else one tap's channels).
struct TapLayout {
  int64_t kernel_rows = 0;
  int64_t runs = 0;
  int64_t run_length = 0;
  int64_t row_step = 0;  // input floats between kernel rows
  int64_t run_step = 0;  // input floats between runs
};

// Dense tile: out[p * block_channels + j] = sum_k pixel_p[offset(k)] * weights[k * block_channels + j]
// for up to `dense_pixels` pixels and one block of `dense_channels` output channels (weights packed
// [kH][runs][run_length][block_channels]).
using DenseTileFn = void (*)(const TapLayout& taps, const float* weights, const float* const* pixels, float* out);

// The epilogue of a dense tile, in place on its sums (values [pixel][dense_channels]): for each of
// `count` pixels and `channels` lanes, P = sum + B + Z (in PreActivation's order) and v = act(P),
// then either mark the pixel's lanes where P is above the threshold (the samples) or keep only its
// active lanes (the other outputs, where the dense fallback computed the predicted ones too).
struct DenseTileEpilogue {
  const float* bias;       // dense_channels floats, zero past `channels`
  const float* residual;   // Z at (n, m0, 0, 0), or null
  int64_t plane;           // floats between two channels of Z
  const int64_t* offsets;  // per pixel: row * oW + col
  bool consecutive;        // offsets[p] = offsets[0] + p for every pixel
  float clip_max;
  float threshold;         // -margin
  uint32_t* const* marks;  // per pixel: OR the lanes where !(P <= threshold) into *marks[p]; or null
  const uint32_t* keeps;   // per pixel: the lanes to keep, the rest set to zero; or null
};
// Adds the lanes `keeps` dropped that were zero (predictions that held) to dropped_zero, the
// others to dropped_nonzero.
using DenseEpilogueFn = void (*)(float* values, int64_t count, int64_t channels, const DenseTileEpilogue& epilogue,
                                 int64_t& dropped_zero, int64_t& dropped_nonzero);

// Gather tile: sum_i,p = sum_k weights_i[k] * pixel_p[offset(k)] for up to `gather_channels`
// channels, each with its own weights ([kH][runs][run_length], contiguous along K), and up to
// `gather_pixels` pixels, finished in the tile: P = sum_i,p + bias[i] + residuals[i][offsets[p]]
// (PreActivation's order; residuals may be null) and rows[i][offsets[p]] = act(P).
struct GatherTileEpilogue {
  const float* bias;              // per channel
  float* const* rows;             // per channel: its plane of Y
  const float* const* residuals;  // per channel: its plane of Z; or null
  const int64_t* offsets;         // per pixel: row * oW + col
  float clip_max;
};
using GatherTileFn = void (*)(const TapLayout& taps, const float* const* weights, const float* const* pixels,
                              const GatherTileEpilogue& epilogue);

// Row tile, for the paths that compute every output straight into NCHW rows (pointwise_conv.h,
// direct_conv.h): for up to `row_tile_channels` channels i and `pixels` consecutive outputs q of a
// row, sum_i,q = sum_t weights_i[t] * input[tap_offsets[t] + q] over the `taps` taps of the
// reduction, finished in the tile as P = sum_i,q + bias[i] + residuals[i][q] (residuals may be null)
// and rows[i][q] = act(P). The tile also records where !(P <= threshold) as bits, so that the
// window rule, which runs later on act(P), decides the trigger from P.
// row_tiles[v - 1] covers v vectors (pixels <= v * lanes), the last one possibly partial: short
// rows pay for no padding lanes beyond one vector.
struct RowTileOutput {
  int64_t channels;                // valid rows, <= row_tile_channels; the others are not stored
  float* const* rows;              // per channel: Y at the tile's first pixel
  const float* const* residuals;   // per channel: Z at the tile's first pixel; or null
  const float* bias;               // per channel
  float clip_max;
  float threshold;                 // -margin
  uint64_t* const* above;          // per channel: OR bit first_bit + q where !(P <= threshold); or null
  int64_t first_bit;               // a multiple of the lanes: a vector's bits share one word
};
using RowTileFn = void (*)(int64_t taps, const int64_t* tap_offsets, const float* const* weights, const float* input,
                           int64_t pixels, const RowTileOutput& out);

// The window rule over whole output rows of `width` columns, as bit arrays (bit c: column c) built
// once per call, so that the rule runs per vector of columns, not per output (band_rule.h).
class BandRuleMasks {
 public:
  BandRuleMasks(const WindowPattern& pattern, int64_t width, int64_t height);
  // Column c of row i (< k) of a band holds a sample.
  const uint64_t* sample_row(int64_t i) const { return sample_.data() + i * words; }
  // Columns c and c + d (|d| <= reach) both lie in the row and in one window.
  const uint64_t* same_window(int64_t d) const { return same_window_.data() + (d + reach) * words; }
  // Columns whose window has no sample inside a band of `rows` rows (a full band's or the last's):
  // such a window is never predicted.
  const uint64_t* empty_windows(int64_t rows) const { return (rows == full_rows_ ? empty_full_ : empty_last_).data(); }
  // Words of working memory a call of the rule needs, zero before its first call: the rule reads
  // the words around a band's sample bits as far as a window reaches, and never writes them.
  int64_t scratch_size() const { return 2 * words + 2 * reach_words() + 1; }
  int64_t reach_words() const { return CeilDiv(reach, 64); }

  int64_t window, width, words, reach;

 private:
  std::vector<uint64_t> sample_, same_window_, empty_full_, empty_last_;
  int64_t full_rows_;
};

// Applies the window rule to bands [band_begin, band_end) of a plane of `height` rows whose every
// output is computed: zeroes the predicted ones and returns their counters (pred_hit/pred_miss if
// `audit`). `above` holds the plane's !(P <= -margin) bits (RowTileOutput::above) from bit 0 at the
// first output of band_begin, and a word of padding past the bands' last bit; `scratch`: see
// BandRuleMasks::scratch_size.
using BandRuleFn = PredictionCounters (*)(const BandRuleMasks& masks, float* plane, const uint64_t* above,
                                          int64_t height, int64_t band_begin, int64_t band_end, bool audit,
                                          uint64_t* scratch);

// One image row of NCHW into NHWC: `channels` rows of `width` floats, `channel_stride` apart,
// become `width` pixels of `channels` consecutive floats, `pixel_stride` apart.
using ChannelsToPixelsFn = void (*)(const float* rows, int64_t channel_stride, int64_t channels, int64_t width,
                                    int64_t pixel_stride, float* pixels);

// A finished dense tile whose pixels are consecutive outputs of a plane into NCHW: `count` pixels
// of `channels` channels (values [pixel][dense_channels]) become channel j's floats y[j * plane + p].
using PixelsToChannelsFn = void (*)(const float* values, int64_t count, int64_t channels, float* y, int64_t plane);

constexpr int kMaxDensePixels = 14;
// The columns one masked store of a row group covers.
constexpr int kRowGroupColumns = 16;

// A finished dense tile's pixels grouped by row for masked stores: group g covers the columns
// [offsets[g], offsets[g] + kRowGroupColumns) of one row of a plane (offsets: row * oW + col), of
// which it stores those set in columns[g], column c from the tile's pixel sources[g][c].
struct TileRowGroups {
  int64_t count = 0;
  int64_t offsets[kMaxDensePixels];
  uint32_t columns[kMaxDensePixels];
  int32_t sources[kMaxDensePixels][kRowGroupColumns];
};
// Stores `channels` channels of a tile's `count` pixels (values [pixel][dense_channels]) by row
// groups, to y[j * plane + ...] for channel j. Null where the instruction set has no masked stores:
// the pixels are then stored one float at a time.
using StoreRowGroupsFn = void (*)(const float* values, int64_t count, int64_t channels, const TileRowGroups& groups,
                                  float* y, int64_t plane);

constexpr int kMaxGatherChannels = 4;
constexpr int kMaxGatherPixels = 6;
constexpr int kMaxRowTileChannels = 4;
constexpr int kMaxRowTileVectors = 6;

struct TileKernels {
  const char* name;
  int64_t lanes;
  int64_t dense_channels;
  int64_t dense_pixels;
  // dense[p - 1] computes p pixels: the last tile of a task (a small map's only one) pays for no
  // padding pixels.
  DenseTileFn dense[kMaxDensePixels];
  DenseEpilogueFn dense_epilogue;
  int64_t gather_channels;  // the widest gather tile
  int64_t gather_pixels;
  // gather[c - 1][p - 1] computes c channels x p pixels, so leftover active channels and the few
  // rest pixels of a window clipped by the map's edge cost no padded work.
  GatherTileFn gather[kMaxGatherChannels][kMaxGatherPixels];
  int64_t row_tile_channels;
  int64_t row_tile_pixels;  // the widest tile
  RowTileFn row_tiles[kMaxRowTileVectors];
  BandRuleFn band_rule;
  ChannelsToPixelsFn channels_to_pixels;
  PixelsToChannelsFn pixels_to_channels;
  StoreRowGroupsFn store_row_groups;
};

const TileKernels& Avx512TileKernels();
const TileKernels& Avx2TileKernels();
const TileKernels& PortableTileKernels();

// The best table this CPU runs, or the one `request` names ("auto", "avx512", "avx2", "portable");
// throws InvalidArgument for an unknown name or an instruction set this CPU lacks.
const TileKernels& SelectTileKernels(const std::string& request);

}  // namespace onnxpred
