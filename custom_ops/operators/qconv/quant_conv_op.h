// PredictiveQLinearConv (domain ai.onnxpred, version 1): QLinearConv + the clamp at the quantized
// zero, computing the sampled outputs of each k x k window first and skipping the rest of a window
// when they trigger. Semantics: docs/predictive_conv.md and onnxpred/reference_quantized.py.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "onnxruntime_cxx_api.h"
#include "operators/common/conv_attributes.h"
#include "operators/conv/predictive_conv_op.h"
#include "operators/conv/window_pattern.h"
#include "operators/qconv/quant_conv.h"

namespace onnxpred {

class PredictiveQLinearConvKernel {
 public:
  PredictiveQLinearConvKernel(const OrtKernelInfo* info, std::string context);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept;

 private:
  void Compute(OrtKernelContext* context) const;

  // The per-channel requantization (padded to whole blocks) and the zero points of a call.
  struct ChannelParams {
    std::vector<int32_t, CacheLineAllocator<int32_t>> offset, threshold;  // read a vector at a time
    PackedFloats scale;
    int32_t x_zero_point = 0, y_zero_point = 0, y_max = 0;
    ONNXTensorElementDataType y_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  };
  // From the quantization inputs (input(i): the value of input i, null if absent), checked.
  ChannelParams ResolveParams(const std::function<Ort::ConstValue(size_t)>& input,
                              ONNXTensorElementDataType x_type) const;

  std::string context_;  // "PredictiveQLinearConv node '<name>'", the prefix of every error
  ConvShapeAttributes conv_;
  float margin_;
  bool audit_;
  bool channels_last_;  // x and Y NHWC
  WindowPattern pattern_;
  const QuantTileKernels* tiles_;
  std::vector<int64_t> weight_shape_;  // of the constant w
  QuantWeights weights_;               // packed once
  std::optional<ChannelParams> constant_params_;  // when every quantization input is constant
};

struct PredictiveQLinearConvOp
    : Ort::CustomOpBase<PredictiveQLinearConvOp, PredictiveQLinearConvKernel, /*WithStatus=*/true> {
  PredictiveQLinearConvOp() { OrtCustomOp::version = kOrtApiVersion; }

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;
  const char* GetName() const;

  // x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B. x, x_zero_point and
  // y_zero_point may be uint8 or int8 (checked by the kernel, so that a wrong one names the node); the
  // others have one type. onnxruntime types a dynamically typed output as the last dynamically typed
  // input: Y as y_zero_point.
  size_t GetInputTypeCount() const { return 9; }
  ONNXTensorElementDataType GetInputType(size_t index) const;
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index < 8 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }

  // Y (y_zero_point's type) and the optional int64[7] counters.
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t index) const {
    return index == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t index) const {
    return index == 0 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
  // onnxruntime accepts several dynamically typed inputs only from an op with a shape inference
  // function; Y's type comes from y_zero_point (above) and its shape is left to the run.
  static Ort::Status InferOutputShape(Ort::ShapeInferContext&) { return Ort::Status{nullptr}; }
};

}  // namespace onnxpred
