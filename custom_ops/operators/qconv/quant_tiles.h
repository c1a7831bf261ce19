// The tile kernels of PredictiveQLinearConv: one table per instruction set, chosen at run time like
// the float32 op's (ONNXPRED_KERNEL). A tile computes up to kMaxQuantPixels output pixels (given as
// pointers into the NHWC input copy, so dense sample rows and gathered rest outputs use the same
// tile) times one block of `lanes` output channels, with the requantization in its epilogue.
// Every table is integer-exact: the same bits as onnxpred/reference_quantized.py.
#pragma once

#include <cstdint>
#include <string>

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

struct QuantTile {
  const int64_t* tap_offsets;  // bytes from a pixel's first tap to each of its kH * kW taps
  int64_t taps;
  int64_t groups;              // 4-byte channel groups per tap
  const uint8_t* weights;      // the block's [tap][group][lane][4 bytes]
  QuantEpilogue epilogue;
};

// Computes pixels p < P (P: the table slot + 1) x lanes l: out[p * lanes + l] = A (Y's byte) and
// bit l of zero_bits[p] = (acc <= T). `pixels[p]` points at pixel p's first tap in the input copy.
using QuantTileFn = void (*)(const QuantTile& tile, const uint8_t* const* pixels, uint8_t* out, uint64_t* zero_bits);

constexpr int kMaxQuantPixels = 6;

struct QuantTileKernels {
  const char* name;
  QuantInputLayout layout;
  int64_t lanes;                      // output channels per block, <= 64
  QuantTileFn tile[kMaxQuantPixels];  // tile[p - 1] computes p pixels
};

const QuantTileKernels& Avx512VnniQuantTiles();
const QuantTileKernels& Avx2QuantTiles();
const QuantTileKernels& PortableQuantTiles();

// The best table this CPU runs, or the one ONNXPRED_KERNEL's `request` names ("scalar" is the
// portable table); throws InvalidArgument for an unknown name or a missing instruction set.
const QuantTileKernels& SelectQuantTileKernels(const std::string& request);

}  // namespace onnxpred
