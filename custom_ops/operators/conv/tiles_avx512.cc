// Compiled with AVX-512F + FMA: 32 channels x 14 pixels dense tiles, 4 x 6 gather tiles, 4 x 96-pixel pointwise tiles (zmm).
#include "operators/conv/tiles.h"

namespace onnxpred {
const TileKernels& Avx512TileKernels() {
  static const TileKernels kernels = MakeTileKernels<Avx512, 2, 14, 4, 6, 4, 6>("avx512");
  return kernels;
}
}  // namespace onnxpred
