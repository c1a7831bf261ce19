// The portable int8 tiles: plain C++ over the centred-shorts layout, 16 channels a block.
#include <cstring>
#include <utility>

#include "operators/qconv/quant_tiles.h"

namespace onnxpred {
namespace {

constexpr int64_t kLanes = 16;

template <int P>
void PortableTile(const QuantTile& t, const QuantPixel* pixels, uint8_t* const* outs, const uint64_t* store,
                  uint64_t* zero_bits) {
  // uint32: int32 arithmetic wrapping modulo 2^32, as the SIMD tables' (signed overflow is undefined in C++).
  uint32_t acc[P][kLanes] = {};
  const uint8_t* w = t.weights;
  for (int64_t tap = 0; tap < t.taps; ++tap) {
    for (int64_t g = 0; g < t.groups; ++g, w += kLanes * 4) {
      for (int p = 0; p < P; ++p) {
        int16_t x[2];
        std::memcpy(x, pixels[p].input + pixels[p].tap_offsets[tap] + 4 * g, sizeof x);
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
      if ((store[p] >> l) & 1) outs[p][l] = Requantize(sum, e.scale[l], e);
    }
  }
}

// C channels x P pixels over the gather rows' chunks of 16 int16 channels.
struct PortableGather {
  template <int C, int P>
  static void Run(const QuantGather& g, const QuantPixel* pixels, const uint8_t* const* weights,
                  const int64_t* lanes, uint8_t* const* outs) {
    int32_t sums[C * P];
    for (int c = 0; c < C; ++c) {
      for (int p = 0; p < P; ++p) {
        uint32_t acc = 0;
        for (int64_t tap = 0; tap < g.taps; ++tap) {
          for (int64_t i = 0; i < g.chunks * 16; ++i) {
            int16_t x, w;
            std::memcpy(&x, pixels[p].input + pixels[0].tap_offsets[tap] + 2 * i, sizeof x);
            std::memcpy(&w, weights[c] + (tap * g.chunks * 16 + i) * 2, sizeof w);
            acc += static_cast<uint32_t>(int32_t{x} * w);
          }
        }
        sums[c * P + p] = static_cast<int32_t>(acc);
      }
    }
    StoreGathered(g, sums, C, P, lanes, outs);
  }
};

template <int... P>
constexpr QuantTileKernels MakeTable(std::integer_sequence<int, P...>) {
  return {"portable", QuantInputLayout::kCentredShorts, kLanes, 1, {QuantTileRow{&PortableTile<P + 1>...}}, 16, 3,
          GatherTable<PortableGather, 3>()};
}

}  // namespace

const QuantTileKernels& PortableQuantTiles() {
  static const QuantTileKernels kernels = MakeTable(std::make_integer_sequence<int, kMaxQuantPixels>());
  return kernels;
}

}  // namespace onnxpred
