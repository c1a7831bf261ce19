// Compiled with AVX2 + FMA: blocks of 8 channels (ymm).
#include "operators/conv/depthwise_tiles.h"

namespace onnxpred {
const DepthwiseKernels& Avx2DepthwiseKernels() {
  static const DepthwiseKernels kernels{"avx2", DepthwiseIsa::kLanes, &RunDepthwiseTask<DepthwiseIsa>};
  return kernels;
}
}  // namespace onnxpred
