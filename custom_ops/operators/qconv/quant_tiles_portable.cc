// The portable int8 tiles: plain C++ over the centred-shorts layout, 16 channels a block.
#include <cmath>
#include <cstring>
#include <utility>

#include "operators/qconv/quant_tiles.h"

namespace onnxpred {
namespace {

constexpr int64_t kLanes = 16;

template <int P>
void PortableTile(const QuantTile& t, const uint8_t* const* pixels, uint8_t* out, uint64_t* zero_bits) {
  // uint32: int32 arithmetic wrapping modulo 2^32, as the SIMD tables' (signed overflow is undefined in C++).
  uint32_t acc[P][kLanes] = {};
  const uint8_t* w = t.weights;
  for (int64_t tap = 0; tap < t.taps; ++tap) {
    for (int64_t g = 0; g < t.groups; ++g, w += kLanes * 4) {
      for (int p = 0; p < P; ++p) {
        int16_t x[2];
        std::memcpy(x, pixels[p] + t.tap_offsets[tap] + 4 * g, sizeof x);
        for (int64_t l = 0; l < kLanes; ++l) {
          int16_t wl[2];
          std::memcpy(wl, w + 4 * l, sizeof wl);
          acc[p][l] += static_cast<uint32_t>(int32_t{x[0]} * wl[0] + int32_t{x[1]} * wl[1]);
        }
      }
    }
  }
  const QuantEpilogue& e = t.epilogue;
  for (int p = 0; p < P; ++p) {
    zero_bits[p] = 0;
    for (int64_t l = 0; l < kLanes; ++l) {
      const int32_t sum = static_cast<int32_t>(acc[p][l] + static_cast<uint32_t>(e.offset[l]));
      if (sum <= e.threshold[l]) zero_bits[p] |= uint64_t{1} << l;
      float v = static_cast<float>(sum) * e.scale[l];
      v = std::fmin(std::fmax(v, 0.f), e.range);
      out[p * kLanes + l] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + e.zero_point);
    }
  }
}

template <int... P>
constexpr QuantTileKernels MakeTable(std::integer_sequence<int, P...>) {
  return {"portable", QuantInputLayout::kCentredShorts, kLanes, {&PortableTile<P + 1>...}};
}

}  // namespace

const QuantTileKernels& PortableQuantTiles() {
  static const QuantTileKernels kernels = MakeTable(std::make_integer_sequence<int, kMaxQuantPixels>());
  return kernels;
}

}  // namespace onnxpred
