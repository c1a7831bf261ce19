#include "operators/conv/tile_kernels.h"

#include "operators/common/op_error.h"

namespace onnxpred {

const TileKernels& SelectTileKernels(const std::string& request) {
#if defined(ONNXPRED_X86_TILES)
  __builtin_cpu_init();
  const bool has_avx512 = __builtin_cpu_supports("avx512f");
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  const bool has_avx512 = false, has_avx2 = false;
#endif
  if (request.empty() || request == "auto") {
#if defined(ONNXPRED_X86_TILES)
    if (has_avx512) return Avx512TileKernels();
    if (has_avx2) return Avx2TileKernels();
#endif
    return PortableTileKernels();
  }
  if (request == "portable") return PortableTileKernels();
#if defined(ONNXPRED_X86_TILES)
  if (request == "avx512" && has_avx512) return Avx512TileKernels();
  if (request == "avx2" && has_avx2) return Avx2TileKernels();
#endif
  if (request == "avx512" || request == "avx2") {
    throw InvalidArgument("ONNXPRED_KERNEL=" + request + ", but this CPU (or build) lacks that instruction set");
  }
  throw InvalidArgument("ONNXPRED_KERNEL must be auto, avx512, avx2, portable or scalar; got \"" + request + "\"");
}

}  // namespace onnxpred
