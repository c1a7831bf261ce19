#include "operators/common/isa.h"

#include "operators/common/op_error.h"

namespace onnxpred {

Isa ChooseIsa(const std::string& request, bool has_avx512, bool has_avx2) {
  if (request.empty() || request == "auto") return has_avx512 ? Isa::kAvx512 : has_avx2 ? Isa::kAvx2 : Isa::kPortable;
  if (request == "portable" || request == "scalar") return Isa::kPortable;
  if (request == "avx512" && has_avx512) return Isa::kAvx512;
  if (request == "avx2" && has_avx2) return Isa::kAvx2;
  if (request == "avx512" || request == "avx2") {
    throw InvalidArgument("ONNXPRED_KERNEL=" + request + ", but this CPU (or build) lacks that instruction set");
  }
  throw InvalidArgument("ONNXPRED_KERNEL must be auto, avx512, avx2, portable or scalar; got \"" + request + "\"");
}

}  // namespace onnxpred
