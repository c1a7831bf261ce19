// Compiled with AVX-512F + FMA: blocks of 16 channels (zmm).
#include "operators/conv/depthwise_tiles.h"

namespace onnxpred {
const DepthwiseKernels& Avx512DepthwiseKernels() {
  static const DepthwiseKernels kernels{"avx512", DepthwiseIsa::kLanes, &RunDepthwiseTask<DepthwiseIsa>};
  return kernels;
}
}  // namespace onnxpred
