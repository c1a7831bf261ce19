// Baseline instruction set only: 8 channels x 6 pixels dense tiles, 2 x 6 gather tiles, 2 x 24-pixel pointwise tiles.
#include "operators/conv/tiles.h"

namespace onnxpred {
const TileKernels& PortableTileKernels() {
  static const TileKernels kernels = MakeTileKernels<Portable, 2, 6, 2, 6, 2, 6>("portable");
  return kernels;
}
}  // namespace onnxpred
