// The library's only exported symbol: registers the ai.onnxpred domain (both ops) with a session.
#include <mutex>

#include "onnxruntime_cxx_api.h"
#include "op_contract.h"
#include "operators/common/op_error.h"
#include "operators/conv/predictive_conv_op.h"
#include "operators/qconv/quant_conv_op.h"

namespace {

// The domain must outlive every session that uses it, so it lives for the whole process.
Ort::CustomOpDomain& Domain() {
  static Ort::CustomOpDomain domain{nullptr};
  static std::once_flag once;
  std::call_once(once, [] {
    domain = Ort::CustomOpDomain{onnxpred::contract::kDomain};
    static onnxpred::PredictiveConvOp predictive_conv;
    static onnxpred::PredictiveQLinearConvOp predictive_qlinear_conv;
    domain.Add(&predictive_conv);
    domain.Add(&predictive_qlinear_conv);
  });
  return domain;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  // Ask for the oldest API the library is written against, so that any newer runtime serves it.
  const OrtApi* api = api_base->GetApi(onnxpred::kOrtApiVersion);
  if (api == nullptr) {
    return api_base->GetApi(1)->CreateStatus(
        ORT_FAIL, "onnxpred's custom op library needs onnxruntime 1.21 or newer (C API version 21)");
  }
  Ort::InitApi(api);
  return onnxpred::StatusFromExceptions("onnxpred RegisterCustomOps", [&] {
    Ort::UnownedSessionOptions(options).Add(Domain());
  });
}
