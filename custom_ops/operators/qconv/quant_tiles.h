// The tile kernels of PredictiveQLinearConv: one table per instruction set, chosen at run time like
// the float32 op's (ONNXPRED_KERNEL). A tile computes up to kMaxQuantPixels output pixels (given as
// pointers into the NHWC input copy, so dense sample rows and gathered rest outputs use the same
// tile) times one block of `lanes` output channels, with the requantization in its epilogue.
// Every table is integer-exact: the same bits as onnxpred/reference_quantized.py.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>

namespace onnxpred {

// How a table wants X: NHWC, each pixel's channels in 4-byte groups (C rounded up; the padding
// channels have zero weights). Padded pixels hold x_zero_point in the layout's form.
enum class QuantInputLayout {
  kBiasedBytes,    // uint8 x, or x + 128 for int8 X: 4 channels a group (vpdpbusd's u8 x s8)
  kCentredShorts,  // int16 x - x_zero_point: 2 channels a group (vpmaddwd's s16 x s16, exact)
};

// Per output channel, from the block's first channel, padded to whole blocks.
struct QuantEpilogue {
  const int32_t* offset;     // added to the tile's raw sum to give acc: B[m] - (x_zero_point in the
                             // layout's form) * sum(w[m]) for biased bytes, B[m] for centred shorts
  const float* scale;        // s[m] = fl32(fl32(x_scale * w_scale[m]) / y_scale)
  const int32_t* threshold;  // T[m]: a sample is zero when acc <= T[m]
  int32_t zero_point;        // y_zero_point
  float range;               // qmax - y_zero_point
};

// Where a tile reads an output pixel's input: its first tap, and the bytes from there to each of its
// kH * kW taps (the input copy's row pitch, or x's where the pixel reads x in place).
struct QuantPixel {
  const uint8_t* input;
  const int64_t* tap_offsets;
};

struct QuantTile {
  int64_t taps;
  int64_t groups;              // 4-byte channel groups per tap
  const uint8_t* weights;      // the block's [tap][group][lane][4 bytes]
  QuantEpilogue epilogue;
};

// Computes pixels p < P (P: the table slot + 1) x lanes l: outs[p][l] = A (Y's byte) for the lanes
// set in store[p], and bit l of zero_bits[p] = (acc <= T). No other byte is written, nor read: past
// the block's valid lanes lies the next pixel of an NHWC Y.
// The masked store lets a window's rest outputs go straight to their place while its predicted
// channels keep y_zero_point.
using QuantTileFn = void (*)(const QuantTile& tile, const QuantPixel* pixels, uint8_t* const* outs,
                             const uint64_t* store, uint64_t* zero_bits);

constexpr int kMaxQuantPixels = 6;

// A's byte from acc: the requantization of every tile's epilogue, one output at a time.
inline uint8_t Requantize(int32_t acc, float scale, const QuantEpilogue& e) {
  float v = static_cast<float>(acc) * scale;
  v = v > 0.f ? v : 0.f;
  v = v < e.range ? v : e.range;
  // Rounded to nearest even without a libm call: adding and taking back 1.5 * 2^23 leaves no
  // fraction bits to a float in [0, 2^22) (v <= 255 here), and float addition rounds to nearest even
  // (the compiler may not fold it: it is not exact).
  const float rounded = (v + 12582912.f) - 12582912.f;
  return static_cast<uint8_t>(static_cast<int32_t>(rounded) + e.zero_point);
}

// The rest outputs of a few channels a window keeps, when computing its whole block would cost
// more: each output's reduction runs along the vector lanes, chunk by chunk of a tap's channels.
struct QuantGather {
  int64_t taps;
  int64_t chunks;              // chunks of gather_channels channels per tap
  QuantEpilogue epilogue;      // the block's, indexed by lane
};

// For c < C and p < P (the table slot + 1 each): outs[p][lanes[c]] = A of the block's channel lanes[c]
// at pixel p. weights[c]: that channel's [tap][chunk] row of PackQuantWeights. The pixels share one
// tap-offset table, pixels[0]'s (a table a pixel cost the AVX-512 loop 12% at 64 channels).
using QuantGatherFn = void (*)(const QuantGather& gather, const QuantPixel* pixels, const uint8_t* const* weights,
                               const int64_t* lanes, uint8_t* const* outs);

// The end of a gather tile that has its raw sums: sums[c * P + p], QuantEpilogue::offset not added.
inline void StoreGathered(const QuantGather& gather, const int32_t* sums, int channels, int pixel_count,
                          const int64_t* lanes, uint8_t* const* outs) {
  const QuantEpilogue& e = gather.epilogue;
  for (int c = 0; c < channels; ++c) {
    const int64_t l = lanes[c];
    for (int p = 0; p < pixel_count; ++p) {
      // uint32: int32 arithmetic wrapping modulo 2^32, as the tiles'.
      const int32_t acc = static_cast<int32_t>(static_cast<uint32_t>(sums[c * pixel_count + p]) +
                                               static_cast<uint32_t>(e.offset[l]));
      outs[p][l] = Requantize(acc, e.scale[l], e);
    }
  }
}

constexpr int kMaxQuantGatherChannels = 4;
constexpr int kMaxQuantGatherPixels = 6;
using GatherFns = std::array<std::array<QuantGatherFn, kMaxQuantGatherPixels>, kMaxQuantGatherChannels>;

// The gather table of `Kernel`, whose static Run<C, P> computes C channels x P pixels, for P up to
// MaxPixels (the slots beyond are null: a table says how many pixels its gather tiles take).
template <typename Kernel, int MaxPixels, int C, int... P>
constexpr std::array<QuantGatherFn, kMaxQuantGatherPixels> GatherRow(std::integer_sequence<int, P...>) {
  return {(P < MaxPixels ? &Kernel::template Run<C, (P < MaxPixels ? P + 1 : MaxPixels)> : nullptr)...};
}
template <typename Kernel, int MaxPixels, int... C>
constexpr GatherFns GatherTable(std::integer_sequence<int, C...>) {
  return {GatherRow<Kernel, MaxPixels, C + 1>(std::make_integer_sequence<int, kMaxQuantGatherPixels>())...};
}
template <typename Kernel, int MaxPixels>
constexpr GatherFns GatherTable() {
  return GatherTable<Kernel, MaxPixels>(std::make_integer_sequence<int, kMaxQuantGatherChannels>());
}

constexpr int kMaxQuantVectors = 4;
using QuantTileRow = std::array<QuantTileFn, kMaxQuantPixels>;

struct QuantTileKernels {
  const char* name;
  QuantInputLayout layout;
  int64_t lanes;                      // output channels per block, <= 64
  int64_t vectors;                    // the block's lanes in this many vectors, <= kMaxQuantVectors
  // tile[v - 1][p - 1] computes p pixels x the first v vectors of lanes: a block with fewer valid
  // channels (the last) computes no more vectors than it needs.
  std::array<QuantTileRow, kMaxQuantVectors> tile;
  int64_t gather_channels;            // channels per chunk of a gather row (a vector's worth)
  int64_t gather_pixels;              // the most pixels a gather tile takes, <= kMaxQuantGatherPixels
  GatherFns gather;                   // gather[c - 1][p - 1]
};

const QuantTileKernels& Avx512VnniQuantTiles();
const QuantTileKernels& Avx2QuantTiles();
const QuantTileKernels& PortableQuantTiles();

// The best table this CPU runs, or the one ONNXPRED_KERNEL's `request` names ("scalar" is the
// portable table); throws InvalidArgument for an unknown name or a missing instruction set.
const QuantTileKernels& SelectQuantTileKernels(const std::string& request);

}  // namespace onnxpred
