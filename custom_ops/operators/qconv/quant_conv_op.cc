#include "operators/qconv/quant_conv_op.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <initializer_list>

#include "op_contract.h"
#include "operators/common/attribute_reader.h"
#include "operators/common/counters_output.h"
#include "operators/common/growing_buffer.h"
#include "operators/common/op_error.h"
#include "operators/common/parallel_for.h"
#include "operators/common/shapes.h"

namespace onnxpred {
namespace {

enum Input : size_t { kX, kXScale, kXZeroPoint, kW, kWScale, kWZeroPoint, kYScale, kYZeroPoint, kB, kInputCount };
constexpr const char* kInputNames[kInputCount] = {"x", "x_scale", "x_zero_point", "w", "w_scale",
                                                 "w_zero_point", "y_scale", "y_zero_point", "B"};
constexpr size_t kOutputY = 0, kOutputCounters = 1;
// The longest reduction whose products cannot overflow int32: 65,793 * 255 * 128 < 2^31.
constexpr int64_t kMaxReduction = 65793;

using ElementType = ONNXTensorElementDataType;
constexpr ElementType kUint8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, kInt8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
                      kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, kInt32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;

std::string TypeName(ElementType type) {
  switch (type) {
    case kUint8: return "uint8";
    case kInt8: return "int8";
    case kFloat: return "float32";
    case kInt32: return "int32";
    default: return "element type " + std::to_string(static_cast<int>(type));
  }
}

// The element types input `index` may have; x_zero_point must have x's type, which the caller checks.
std::initializer_list<ElementType> AllowedTypes(size_t index) {
  static const std::initializer_list<ElementType> kActivation = {kUint8, kInt8}, kFloats = {kFloat},
                                                  kInt8s = {kInt8}, kInt32s = {kInt32};
  switch (index) {
    case kX: case kXZeroPoint: case kYZeroPoint: return kActivation;
    case kW: case kWZeroPoint: return kInt8s;
    case kB: return kInt32s;
    default: return kFloats;
  }
}

void CheckType(size_t index, ElementType type) {
  const auto allowed = AllowedTypes(index);
  if (std::find(allowed.begin(), allowed.end(), type) != allowed.end()) return;
  std::string names;
  for (ElementType t : allowed) names += (names.empty() ? "" : " or ") + TypeName(t);
  throw InvalidArgument(std::string("input ") + kInputNames[index] + " must be " + names + ", got " + TypeName(type));
}

struct TensorInfo {
  ElementType type;
  std::vector<int64_t> shape;
  int64_t count;
};

TensorInfo Describe(const Ort::ConstValue& value, size_t index) {
  if (value == nullptr) throw InvalidArgument(std::string("input ") + kInputNames[index] + " is missing");
  if (!value.IsTensor()) throw InvalidArgument(std::string("input ") + kInputNames[index] + " must be a tensor");
  auto info = value.GetTensorTypeAndShapeInfo();
  TensorInfo described{info.GetElementType(), info.GetShape(), static_cast<int64_t>(info.GetElementCount())};
  CheckType(index, described.type);
  return described;
}

// A per-tensor quantization parameter: one value, as a scalar or a 1-element tensor.
void ExpectOneValue(const TensorInfo& info, size_t index, const char* why = "") {
  if (info.count != 1) {
    throw InvalidArgument(std::string("input ") + kInputNames[index] + " must be one value (a scalar)" + why +
                          ", got shape " + ShapeString(info.shape));
  }
}

float PositiveScale(float value, size_t index) {
  if (!(std::isfinite(value) && value > 0)) {
    throw InvalidArgument(std::string("input ") + kInputNames[index] + " must be positive and finite, got " +
                          Number(value));
  }
  return value;
}

int32_t ZeroPointValue(const Ort::ConstValue& value, ElementType type) {
  return type == kInt8 ? int32_t{value.GetTensorData<int8_t>()[0]} : int32_t{value.GetTensorData<uint8_t>()[0]};
}

void CheckSymmetric(const Ort::ConstValue& w_zero_point, int64_t out_channels) {
  const TensorInfo info = Describe(w_zero_point, kWZeroPoint);
  if (info.count != 1 && info.count != out_channels) {
    throw InvalidArgument("input w_zero_point must have 1 or " + std::to_string(out_channels) + " values, got shape " +
                          ShapeString(info.shape));
  }
  const int8_t* values = w_zero_point.GetTensorData<int8_t>();
  if (std::any_of(values, values + info.count, [](int8_t v) { return v != 0; })) {
    throw InvalidArgument("input w_zero_point must be all zero (symmetric int8 weights, as onnxruntime's quantizer "
                          "writes them); asymmetric weights are not supported");
  }
}

}  // namespace

PredictiveQLinearConvKernel::PredictiveQLinearConvKernel(const OrtKernelInfo* raw_info, std::string context)
    : context_(std::move(context)) {
  namespace c = contract;
  conv_ = ReadConvShapeAttributes(raw_info);
  pattern_ = WindowPattern::Named(Read<c::kPattern>(raw_info), Read<c::kWindow>(raw_info));
  margin_ = Read<c::kMargin>(raw_info);
  audit_ = Read<c::kAudit>(raw_info) == 1;
  channels_last_ = Read<c::kChannelsLast>(raw_info) == 1;
  if (conv_.group != 1) {
    throw InvalidArgument("attribute 'group' must be 1: grouped and depthwise int8 convolutions are not supported");
  }
  const char* kernel_request = std::getenv("ONNXPRED_KERNEL");
  tiles_ = &SelectQuantTileKernels(kernel_request ? kernel_request : "auto");

  Ort::ConstKernelInfo info{raw_info};
  const size_t inputs = info.GetInputCount();
  if (inputs < kB || inputs > kInputCount) {
    throw InvalidArgument("expects 8 or 9 inputs (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, "
                          "y_zero_point, optional B), got " + std::to_string(inputs));
  }
  ElementType x_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  for (size_t i = 0; i < inputs; ++i) {
    if (info.GetInputName(i).empty()) {
      if (i == kB) continue;  // the omitted optional B
      throw InvalidArgument(std::string("input ") + kInputNames[i] + " is missing");
    }
    auto type = info.GetInputTypeInfo(i);
    if (type.GetONNXType() != ONNX_TYPE_TENSOR) {
      throw InvalidArgument(std::string("input ") + kInputNames[i] + " must be a tensor");
    }
    const ElementType element = type.GetTensorTypeAndShapeInfo().GetElementType();
    CheckType(i, element);
    if (i == kX) x_type = element;
    if (i == kXZeroPoint && element != x_type) {
      throw InvalidArgument("input x_zero_point must have x's type " + TypeName(x_type) + ", got " + TypeName(element));
    }
  }
  int is_constant = 0;
  Ort::ConstValue weights = info.GetTensorConstantInput(kW, &is_constant);
  if (!is_constant) {
    throw InvalidArgument("input w must be a constant initializer (the int8 weights are packed once)");
  }
  weight_shape_ = Describe(weights, kW).shape;
  if (weight_shape_.size() != 4) {
    throw InvalidArgument("input w must be 4-D [M, C, kH, kW], got shape " + ShapeString(weight_shape_));
  }
  if (CheckedMul(CheckedMul(weight_shape_[1], weight_shape_[2]), weight_shape_[3]) > kMaxReduction) {
    throw InvalidArgument("input w " + ShapeString(weight_shape_) + " sums more than " + std::to_string(kMaxReduction) +
                          " products per output, which could overflow the int32 accumulator");
  }
  Ort::ConstValue w_zero_point = info.GetTensorConstantInput(kWZeroPoint, &is_constant);
  if (is_constant) CheckSymmetric(w_zero_point, weight_shape_[0]);
  // A nominal input resolves the geometry now, so that a w contradicting the attributes fails here.
  ResolveConvGeometry(conv_, {1, weight_shape_[1], weight_shape_[2] * conv_.dilations[0] + 1,
                              weight_shape_[3] * conv_.dilations[1] + 1}, weight_shape_);
  weights_ = PackQuantWeights(weights.GetTensorData<int8_t>(), weight_shape_[0], weight_shape_[1],
                              weight_shape_[2] * weight_shape_[3], *tiles_);
  // Constant quantization parameters (what the rewriter writes) are resolved, and checked, once.
  Ort::ConstValue constants[kInputCount];
  bool all_constant = true;
  for (size_t i : {kXScale, kXZeroPoint, kWScale, kWZeroPoint, kYScale, kYZeroPoint, kB}) {
    if (i >= inputs || info.GetInputName(i).empty()) continue;  // an omitted B
    constants[i] = info.GetTensorConstantInput(i, &is_constant);
    all_constant = all_constant && is_constant;
  }
  if (all_constant) constant_params_ = ResolveParams([&](size_t i) { return constants[i]; }, x_type);
}

PredictiveQLinearConvKernel::ChannelParams PredictiveQLinearConvKernel::ResolveParams(
    const std::function<Ort::ConstValue(size_t)>& input, ElementType x_type) const {
  const int64_t out_channels = weight_shape_[0];
  TensorInfo info[kInputCount];
  for (size_t i : {kXScale, kXZeroPoint, kWScale, kYScale, kYZeroPoint}) info[i] = Describe(input(i), i);
  if (info[kXZeroPoint].type != x_type) {
    throw InvalidArgument("input x_zero_point must have x's type " + TypeName(x_type) + ", got " +
                          TypeName(info[kXZeroPoint].type));
  }
  ExpectOneValue(info[kXScale], kXScale);
  ExpectOneValue(info[kXZeroPoint], kXZeroPoint);
  ExpectOneValue(info[kYScale], kYScale, " (per-channel y_scale is not supported)");
  ExpectOneValue(info[kYZeroPoint], kYZeroPoint);
  if (info[kWScale].count != 1 && info[kWScale].count != out_channels) {
    throw InvalidArgument("input w_scale must have 1 or " + std::to_string(out_channels) +
                          " values (one per output channel), got shape " + ShapeString(info[kWScale].shape));
  }
  CheckSymmetric(input(kWZeroPoint), out_channels);
  const Ort::ConstValue b = input(kB);
  const int32_t* bias = nullptr;
  if (b != nullptr) {
    const TensorInfo b_info = Describe(b, kB);
    if (b_info.shape != std::vector<int64_t>{out_channels}) {
      throw InvalidArgument("input B must have shape [" + std::to_string(out_channels) + "], got " +
                            ShapeString(b_info.shape));
    }
    bias = b.GetTensorData<int32_t>();
  }

  ChannelParams params;
  const float x_scale = PositiveScale(input(kXScale).GetTensorData<float>()[0], kXScale);
  const float y_scale = PositiveScale(input(kYScale).GetTensorData<float>()[0], kYScale);
  const float* w_scales = input(kWScale).GetTensorData<float>();
  params.y_type = info[kYZeroPoint].type;
  params.x_zero_point = ZeroPointValue(input(kXZeroPoint), x_type);
  params.y_zero_point = ZeroPointValue(input(kYZeroPoint), params.y_type);
  params.y_max = params.y_type == kInt8 ? 127 : 255;
  const int32_t layout_zero_point = x_type == kInt8 ? params.x_zero_point + 128 : params.x_zero_point;
  const size_t padded = weights_.sums.size();  // padding lanes are computed but never stored
  params.offset.assign(padded, 0);
  params.threshold.assign(padded, 0);
  params.scale.assign(padded, 0.f);
  for (int64_t m = 0; m < out_channels; ++m) {
    const float w_scale = PositiveScale(w_scales[info[kWScale].count == 1 ? 0 : m], kWScale);
    const float s = OutputScale(x_scale, w_scale, y_scale);
    if (!std::isfinite(s)) throw InvalidArgument("x_scale * w_scale / y_scale overflows float32");
    params.scale[m] = s;
    params.threshold[m] = ZeroThreshold(s, params.y_zero_point == params.y_max, margin_, x_scale, w_scale);
    // The sum in the biased-bytes layout counts x_zero_point (+ 128) per weight: take it back.
    const uint32_t correction = tiles_->layout == QuantInputLayout::kBiasedBytes
                                    ? static_cast<uint32_t>(layout_zero_point) * static_cast<uint32_t>(weights_.sums[m])
                                    : 0;
    params.offset[m] = static_cast<int32_t>(static_cast<uint32_t>(bias ? bias[m] : 0) - correction);
  }
  return params;
}

OrtStatusPtr PredictiveQLinearConvKernel::ComputeV2(OrtKernelContext* context) noexcept {
  return StatusFromExceptions(context_, [&] { Compute(context); });
}

void PredictiveQLinearConvKernel::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const size_t inputs = context.GetInputCount();
  auto input = [&](size_t i) { return i < inputs ? context.GetInput(i) : Ort::ConstValue{nullptr}; };
  TensorInfo info[kW + 1];
  for (size_t i = 0; i <= kW; ++i) info[i] = Describe(input(i), i);

  if (info[kW].shape != weight_shape_) {
    throw InvalidArgument("input w has shape " + ShapeString(info[kW].shape) + ", not the constant's " +
                          ShapeString(weight_shape_));
  }
  // The geometry is resolved on x's NCHW shape; a channels-last x is [N, H, W, C].
  std::vector<int64_t> x_shape = info[kX].shape;
  if (channels_last_ && x_shape.size() != 4) {
    throw InvalidArgument("input x must be 4-D [N, H, W, C] (channels_last = 1), got shape " + ShapeString(x_shape));
  }
  if (channels_last_) x_shape = {x_shape[0], x_shape[3], x_shape[1], x_shape[2]};
  const ConvGeometry g = ResolveConvGeometry(conv_, x_shape, weight_shape_);
  const int64_t out_channels = g.out_channels;
  ChannelParams per_call;
  const ChannelParams& params = constant_params_ ? *constant_params_ : (per_call = ResolveParams(input, info[kX].type));
  const bool x_signed = info[kX].type == kInt8;
  const int32_t x_zero_point = params.x_zero_point, y_zero_point = params.y_zero_point, y_max = params.y_max;
  const ElementType y_type = params.y_type;

  const std::vector<int64_t> y_shape = channels_last_
                                           ? std::vector<int64_t>{g.batch, g.out_height, g.out_width, out_channels}
                                           : std::vector<int64_t>{g.batch, out_channels, g.out_height, g.out_width};
  Ort::UnownedValue y = context.GetOutput(kOutputY, y_shape);
  Ort::UnownedValue counters = CountersOutput(context, kOutputCounters);
  const ElementType y_allocated = y.GetTensorTypeAndShapeInfo().GetElementType();
  if (y_allocated != y_type) {
    throw InvalidArgument("output Y is " + TypeName(y_allocated) + " but y_zero_point is " + TypeName(y_type) +
                          ": Y must have y_zero_point's type");
  }
  std::vector<PredictionCounters> task_counters;
  if (g.batch * out_channels * g.out_height * g.out_width > 0) {
    const int64_t stride = weights_.groups * 4;
    const int64_t copy_rows = g.batch * g.padded_height();
    // Kept per thread between calls: a fresh copy of a large layer's input costs its page faults each time.
    // (A lambda names the running thread's thread_local, not this one's: the tasks get a pointer.)
    thread_local GrowingBuffer copy_buffer;
    uint8_t* copy = copy_buffer.Get(static_cast<size_t>(copy_rows * g.padded_width() * stride + kQuantInputSlack));
    const uint8_t* x = static_cast<const uint8_t*>(input(kX).GetTensorRawData());
    const bool x_is_layout = channels_last_ && !x_signed && tiles_->layout == QuantInputLayout::kBiasedBytes;
    const QuantInputPlan plan(g, x_is_layout, tiles_->gather_channels, pattern_.size);
    ParallelFor(context, copy_rows, [&](int64_t row) {
      int64_t spans[2][2];
      for (int s = 0, count = plan.CopySpans(row, spans); s < count; ++s) {
        QuantInputRow(x, x_signed, x_zero_point, g, channels_last_, tiles_->layout, weights_.groups, row, spans[s][0],
                      spans[s][1], copy);
      }
    });
    const QuantCall call{g, pattern_, audit_, channels_last_, *tiles_, weights_, copy,
                         QuantEpilogue{params.offset.data(), params.scale.data(), params.threshold.data(), y_zero_point,
                                       static_cast<float>(y_max - y_zero_point)},
                         plan, x, static_cast<uint8_t*>(y.GetTensorMutableRawData())};
    const QuantConv conv(call);
    task_counters.resize(static_cast<size_t>(conv.Tasks()));
    ParallelFor(context, conv.Tasks(),
                [&](int64_t task) { task_counters[static_cast<size_t>(task)] = conv.RunTask(task); });
  }

  WriteCounters(counters, task_counters, g, audit_);
}

ONNXTensorElementDataType PredictiveQLinearConvOp::GetInputType(size_t index) const {
  if (index == kX || index == kXZeroPoint || index == kYZeroPoint) return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  return *AllowedTypes(index).begin();
}

const char* PredictiveQLinearConvOp::GetName() const { return contract::kPredictiveQLinearConvOpType; }

OrtStatusPtr PredictiveQLinearConvOp::CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
  return CreateKernelNamingTheNode<PredictiveQLinearConvKernel>(contract::kPredictiveQLinearConvOpType, info, kernel);
}

}  // namespace onnxpred
