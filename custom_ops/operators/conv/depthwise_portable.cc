// Baseline instruction set only: blocks of 4 channels.
#include "operators/conv/depthwise_tiles.h"

namespace onnxpred {
const DepthwiseKernels& PortableDepthwiseKernels() {
  static const DepthwiseKernels kernels{"portable", DepthwiseIsa::kLanes, &RunDepthwiseTask<DepthwiseIsa>};
  return kernels;
}
}  // namespace onnxpred
