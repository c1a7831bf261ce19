// Compiled with AVX2 + FMA: 16 channels x 6 pixels dense tiles, 2 x 6 gather tiles, 2 x 48-pixel pointwise tiles (ymm).
#include "operators/conv/tiles.h"

namespace onnxpred {
const TileKernels& Avx2TileKernels() {
  static const TileKernels kernels = MakeTileKernels<Avx2, 2, 6, 2, 6, 2, 6>("avx2");
  return kernels;
}
}  // namespace onnxpred
