#include "operators/conv/predictive_conv_op.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <sstream>

#include "op_contract.h"
#include "operators/common/op_error.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/pointwise_conv.h"
#include "operators/conv/tiled_conv.h"

namespace onnxpred {
namespace {

constexpr size_t kInputX = 0, kInputW = 1, kInputB = 2, kInputZ = 3;
constexpr size_t kOutputY = 0, kOutputCounters = 1;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

int64_t CheckedMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw InvalidArgument("tensor sizes overflow a 64-bit integer");
  return r;
}

int64_t CheckedAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw InvalidArgument("tensor sizes overflow a 64-bit integer");
  return r;
}

// --- Attributes: read with their ONNX type; a present attribute of another type is an error. ---

bool Succeeded(OrtStatus* status) {
  if (status == nullptr) return true;
  Ort::GetApi().ReleaseStatus(status);
  return false;
}

bool HasAttribute(const OrtKernelInfo* info, const char* name) {
  const OrtApi& api = Ort::GetApi();
  int64_t i;
  float f;
  size_t size = 0;
  return Succeeded(api.KernelInfoGetAttribute_int64(info, name, &i)) ||
         Succeeded(api.KernelInfoGetAttribute_float(info, name, &f)) ||
         Succeeded(api.KernelInfoGetAttribute_string(info, name, nullptr, &size)) ||
         Succeeded(api.KernelInfoGetAttributeArray_int64(info, name, nullptr, &size)) ||
         Succeeded(api.KernelInfoGetAttributeArray_float(info, name, nullptr, &size));
}

[[noreturn]] void WrongAttributeType(const char* name, const char* type) {
  throw InvalidArgument(std::string("attribute '") + name + "' must be " + type);
}

std::optional<int64_t> IntAttribute(const OrtKernelInfo* info, const char* name) {
  int64_t value;
  if (Succeeded(Ort::GetApi().KernelInfoGetAttribute_int64(info, name, &value))) return value;
  if (HasAttribute(info, name)) WrongAttributeType(name, "an int");
  return std::nullopt;
}

std::optional<float> FloatAttribute(const OrtKernelInfo* info, const char* name) {
  float value;
  if (Succeeded(Ort::GetApi().KernelInfoGetAttribute_float(info, name, &value))) return value;
  if (HasAttribute(info, name)) WrongAttributeType(name, "a float");
  return std::nullopt;
}

std::optional<std::string> StringAttribute(const OrtKernelInfo* info, const char* name) {
  const OrtApi& api = Ort::GetApi();
  size_t size = 0;
  if (Succeeded(api.KernelInfoGetAttribute_string(info, name, nullptr, &size))) {
    std::string value(size, '\0');
    if (Succeeded(api.KernelInfoGetAttribute_string(info, name, value.data(), &size))) {
      value.resize(size > 0 ? size - 1 : 0);  // size counts the terminating NUL
      return value;
    }
  }
  if (HasAttribute(info, name)) WrongAttributeType(name, "a string");
  return std::nullopt;
}

std::optional<std::vector<int64_t>> IntsAttribute(const OrtKernelInfo* info, const char* name) {
  const OrtApi& api = Ort::GetApi();
  size_t size = 0;
  if (Succeeded(api.KernelInfoGetAttributeArray_int64(info, name, nullptr, &size))) {
    std::vector<int64_t> value(size);
    if (size == 0 || Succeeded(api.KernelInfoGetAttributeArray_int64(info, name, value.data(), &size))) return value;
  }
  if (HasAttribute(info, name)) WrongAttributeType(name, "a list of ints");
  return std::nullopt;
}

// --- The contract's attributes (op_contract.h): one reader, Read<spec>, and one range check. ---

std::string Number(double value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

// `shown` is the value as the message prints it; `verb` "be" for a number, "hold values" for a list.
void CheckRange(const AttributeSpec& spec, double value, const char* verb, const std::string& shown) {
  const std::string must = std::string("attribute '") + spec.name + "' must " + verb + " ";
  if (spec.finite && !std::isfinite(value)) throw InvalidArgument(must + "finite, got " + shown);
  // Written so that NaN fails every bound.
  if (spec.minimum && !(value >= *spec.minimum)) {
    throw InvalidArgument(must + ">= " + Number(*spec.minimum) + ", got " + shown);
  }
  if (spec.maximum && !(value <= *spec.maximum)) {
    throw InvalidArgument(must + "<= " + Number(*spec.maximum) + ", got " + shown);
  }
  if (spec.exclusive_minimum && !(value > *spec.exclusive_minimum)) {
    throw InvalidArgument(must + "> " + Number(*spec.exclusive_minimum) + ", got " + shown);
  }
}

[[noreturn]] void NotAChoice(const AttributeSpec& spec, const std::string& value) {
  std::string allowed;  // "a", "b" or "c"
  for (int64_t i = 0; i < spec.choice_count; ++i) {
    allowed += std::string(i == 0 ? "" : i + 1 == spec.choice_count ? " or " : ", ") + '"' + spec.choices[i] + '"';
  }
  throw InvalidArgument(std::string("attribute '") + spec.name + "' must be " + allowed + ", got \"" + value + "\"");
}

// The attribute kSpec of the node, checked, or its default: int64_t, float, std::string, or
// std::vector<int64_t> (std::optional of it when the contract gives no default).
template <const AttributeSpec& kSpec>
auto Read(const OrtKernelInfo* info) {
  if constexpr (kSpec.type == AttributeType::kInt) {
    const int64_t value = IntAttribute(info, kSpec.name).value_or(static_cast<int64_t>(kSpec.default_number));
    CheckRange(kSpec, static_cast<double>(value), "be", std::to_string(value));
    return value;
  } else if constexpr (kSpec.type == AttributeType::kFloat) {
    const float value = FloatAttribute(info, kSpec.name).value_or(static_cast<float>(kSpec.default_number));
    CheckRange(kSpec, value, "be", Number(value));
    return value;
  } else if constexpr (kSpec.type == AttributeType::kString) {
    std::string value = StringAttribute(info, kSpec.name).value_or(kSpec.default_string);
    const char* const* end = kSpec.choices + kSpec.choice_count;
    if (kSpec.choices != nullptr && std::find(kSpec.choices, end, value) == end) NotAChoice(kSpec, value);
    return value;
  } else {
    std::optional<std::vector<int64_t>> value = IntsAttribute(info, kSpec.name);
    if (value) {
      if (static_cast<int64_t>(value->size()) != kSpec.count) {
        throw InvalidArgument(std::string("attribute '") + kSpec.name + "' must have " + std::to_string(kSpec.count) +
                              " values for a 2-D convolution, got " + ShapeString(*value));
      }
      for (int64_t v : *value) CheckRange(kSpec, static_cast<double>(v), "hold values", ShapeString(*value));
    }
    if constexpr (kSpec.has_default) {
      return value ? *value : std::vector<int64_t>(kSpec.default_ints, kSpec.default_ints + kSpec.count);
    } else {
      return value;
    }
  }
}

PredictiveConvAttributes ReadAttributes(const OrtKernelInfo* info) {
  namespace c = contract;
  PredictiveConvAttributes a;
  a.kernel_shape = Read<c::kKernelShape>(info);
  a.strides = Read<c::kStrides>(info);
  a.pads = Read<c::kPads>(info);
  a.dilations = Read<c::kDilations>(info);
  a.group = Read<c::kGroup>(info);
  a.window = Read<c::kWindow>(info);
  a.pattern = Read<c::kPattern>(info);
  a.margin = Read<c::kMargin>(info);
  a.activation.kind = Read<c::kActivation>(info) == "Clip" ? Activation::kClip : Activation::kRelu;
  a.activation.clip_max = Read<c::kClipMax>(info);
  if (a.activation.kind == Activation::kRelu && std::isfinite(a.activation.clip_max)) {
    throw InvalidArgument("attribute 'clip_max' is only valid with activation \"Clip\"");
  }
  a.audit = Read<c::kAudit>(info) == 1;
  return a;
}

const char* InputName(size_t index) {
  static const char* const kNames[] = {"X", "W", "B", "Z"};
  return kNames[index];
}

std::vector<int64_t> FloatTensorShape(const Ort::ConstValue& value, size_t index) {
  if (!value.IsTensor()) throw InvalidArgument(std::string("input ") + InputName(index) + " must be a tensor");
  auto info = value.GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    throw InvalidArgument(std::string("input ") + InputName(index) + " must be float32, got element type " +
                          std::to_string(static_cast<int>(info.GetElementType())));
  }
  return info.GetShape();
}

// At most this many batches per ParallelFor: enough to balance two to a few dozen threads, few
// enough that waking threads (no spinning) does not cost more than the work of a small layer.
constexpr size_t kMaxParallelBatches = 64;

template <typename Fn>
void ParallelFor(const Ort::KernelContext& context, int64_t total, Fn&& fn) {
  if (total <= 0) return;
  context.ParallelFor([](void* data, size_t i) { (*static_cast<Fn*>(data))(static_cast<int64_t>(i)); },
                      static_cast<size_t>(total), std::min(static_cast<size_t>(total), kMaxParallelBatches), &fn);
}

// Runs every task of a path's plan (Tasks(), RunTask(task)) on onnxruntime's intra-op threads.
template <typename Conv>
std::vector<PredictionCounters> RunTasks(const Ort::KernelContext& context, const Conv& conv) {
  std::vector<PredictionCounters> counters(static_cast<size_t>(conv.Tasks()));
  ParallelFor(context, conv.Tasks(), [&](int64_t task) { counters[static_cast<size_t>(task)] = conv.RunTask(task); });
  return counters;
}

}  // namespace

PredictiveConvKernel::PredictiveConvKernel(const OrtKernelInfo* raw_info, std::string context)
    : context_(std::move(context)) {
  attributes_ = ReadAttributes(raw_info);
  pattern_ = WindowPattern::Named(attributes_.pattern, attributes_.window);
  const char* kernel_request = std::getenv("ONNXPRED_KERNEL");
  if (kernel_request == nullptr || std::string(kernel_request) != "scalar") {
    tile_kernels_ = &SelectTileKernels(kernel_request ? kernel_request : "auto");
    depthwise_kernels_ = &DepthwiseKernelsFor(*tile_kernels_);
  }

  Ort::ConstKernelInfo info{raw_info};
  const size_t inputs = info.GetInputCount();
  if (inputs < 2 || inputs > 4) {
    throw InvalidArgument("expects 2 to 4 inputs (X, W, optional B, optional Z), got " + std::to_string(inputs));
  }
  for (size_t i = 0; i < inputs; ++i) {
    if (info.GetInputName(i).empty()) continue;  // an omitted optional input
    auto type = info.GetInputTypeInfo(i);
    if (type.GetONNXType() != ONNX_TYPE_TENSOR ||
        type.GetTensorTypeAndShapeInfo().GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
      throw InvalidArgument(std::string("input ") + InputName(i) + " must be a float32 tensor");
    }
  }
  int is_constant = 0;
  Ort::ConstValue weights = info.GetTensorConstantInput(kInputW, &is_constant);
  if (is_constant) {
    constant_weight_shape_ = FloatTensorShape(weights, kInputW);
    if (constant_weight_shape_.size() != 4) {
      throw InvalidArgument("input W must be 4-D [M, C/group, kH, kW], got shape " + ShapeString(constant_weight_shape_));
    }
    // Resolve the geometry now, so that a bad W fails at session creation, and pack W for its path.
    // The path depends on the input's size (a 1x1 conv on a small plane takes the tiled path): use
    // the input the graph declares where it gives C, H and W (the batch does not change the path),
    // else a nominal one; a call whose path needs another layout packs it then.
    const std::vector<int64_t> declared = info.GetInputTypeInfo(kInputX).GetTensorTypeAndShapeInfo().GetShape();
    const bool sized = declared.size() == 4 && declared[1] > 0 && declared[2] > 0 && declared[3] > 0;
    const std::vector<int64_t> x_shape =
        sized ? std::vector<int64_t>{1, declared[1], declared[2], declared[3]}
              : std::vector<int64_t>{1, CheckedMul(constant_weight_shape_[1], attributes_.group),
                                     CheckedAdd(CheckedMul(attributes_.dilations[0], constant_weight_shape_[2]), 1),
                                     CheckedAdd(CheckedMul(attributes_.dilations[1], constant_weight_shape_[3]), 1)};
    const ConvGeometry g = ResolveGeometry(x_shape, constant_weight_shape_);
    constant_weights_ = PackWeightsFor(SelectPath(g), weights.GetTensorData<float>(), g);
  }
}

ConvGeometry PredictiveConvKernel::ResolveGeometry(const std::vector<int64_t>& x, const std::vector<int64_t>& w) const {
  if (x.size() != 4) throw InvalidArgument("input X must be 4-D [N, C, H, W], got shape " + ShapeString(x));
  if (w.size() != 4) throw InvalidArgument("input W must be 4-D [M, C/group, kH, kW], got shape " + ShapeString(w));
  const auto& a = attributes_;
  ConvGeometry g;
  g.batch = x[0];
  g.in_channels = x[1];
  g.in_height = x[2];
  g.in_width = x[3];
  g.out_channels = w[0];
  g.group = a.group;
  g.kernel_h = w[2];
  g.kernel_w = w[3];
  if (g.kernel_h < 1 || g.kernel_w < 1) throw InvalidArgument("input W has an empty kernel, shape " + ShapeString(w));
  if (a.kernel_shape && ((*a.kernel_shape)[0] != g.kernel_h || (*a.kernel_shape)[1] != g.kernel_w)) {
    throw InvalidArgument("attribute 'kernel_shape' " + ShapeString(*a.kernel_shape) +
                          " contradicts the shape of W " + ShapeString(w));
  }
  if (CheckedMul(w[1], a.group) != g.in_channels) {
    throw InvalidArgument("input X has " + std::to_string(g.in_channels) + " channels but W " + ShapeString(w) +
                          " with group " + std::to_string(a.group) + " expects " +
                          std::to_string(CheckedMul(w[1], a.group)));
  }
  if (g.out_channels % a.group != 0) {
    throw InvalidArgument("W's " + std::to_string(g.out_channels) + " output channels are not divisible by group " +
                          std::to_string(a.group));
  }
  g.stride_h = a.strides[0];
  g.stride_w = a.strides[1];
  g.dilation_h = a.dilations[0];
  g.dilation_w = a.dilations[1];
  g.pad_top = a.pads[0];
  g.pad_left = a.pads[1];
  g.pad_bottom = a.pads[2];
  g.pad_right = a.pads[3];
  const int64_t padded_h = CheckedAdd(CheckedAdd(g.in_height, g.pad_top), g.pad_bottom);
  const int64_t padded_w = CheckedAdd(CheckedAdd(g.in_width, g.pad_left), g.pad_right);
  const int64_t extent_h = CheckedAdd(CheckedMul(g.dilation_h, g.kernel_h - 1), 1);
  const int64_t extent_w = CheckedAdd(CheckedMul(g.dilation_w, g.kernel_w - 1), 1);
  if (padded_h < extent_h || padded_w < extent_w) {
    throw InvalidArgument("padded input " + std::to_string(padded_h) + "x" + std::to_string(padded_w) +
                          " is smaller than the dilated kernel " + std::to_string(extent_h) + "x" +
                          std::to_string(extent_w));
  }
  g.out_height = (padded_h - extent_h) / g.stride_h + 1;
  g.out_width = (padded_w - extent_w) / g.stride_w + 1;
  // Every product the kernels form must fit: padded input, output and MAC counts.
  CheckedMul(CheckedMul(CheckedMul(g.batch, padded_h), padded_w), g.in_channels);
  CheckedMul(CheckedMul(CheckedMul(CheckedMul(g.batch, g.out_channels), g.out_height), g.out_width),
             CheckedMul(CheckedMul(w[1], g.kernel_h), g.kernel_w));
  return g;
}

OrtStatusPtr PredictiveConvKernel::ComputeV2(OrtKernelContext* context) noexcept {
  return StatusFromExceptions(context_, [&] { Compute(context); });
}

void PredictiveConvKernel::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const size_t inputs = context.GetInputCount();
  auto input = [&](size_t i) { return i < inputs ? context.GetInput(i) : Ort::ConstValue{nullptr}; };
  const Ort::ConstValue x = input(kInputX), w = input(kInputW), b = input(kInputB), z = input(kInputZ);
  if (x == nullptr || w == nullptr) throw InvalidArgument("inputs X and W are required");

  const std::vector<int64_t> x_shape = FloatTensorShape(x, kInputX);
  const std::vector<int64_t> w_shape = FloatTensorShape(w, kInputW);
  const ConvGeometry g = ResolveGeometry(x_shape, w_shape);
  if (b != nullptr) {
    const auto b_shape = FloatTensorShape(b, kInputB);
    if (b_shape.size() != 1 || b_shape[0] != g.out_channels) {
      throw InvalidArgument("input B must have shape [" + std::to_string(g.out_channels) + "], got " +
                            ShapeString(b_shape));
    }
  }
  const std::vector<int64_t> y_shape{g.batch, g.out_channels, g.out_height, g.out_width};
  if (z != nullptr && FloatTensorShape(z, kInputZ) != y_shape) {
    throw InvalidArgument("input Z must have the output's shape " + ShapeString(y_shape) + ", got " +
                          ShapeString(FloatTensorShape(z, kInputZ)));
  }

  const ConvPath path = SelectPath(g);
  PackedWeights packed_locally;
  const PackedWeights* packed = &constant_weights_;
  if (constant_weight_shape_.empty() || constant_weight_shape_ != w_shape || !constant_weights_.Serves(path)) {
    packed_locally = PackWeightsFor(path, w.GetTensorData<float>(), g);
    packed = &packed_locally;
  }

  Ort::UnownedValue y = context.GetOutput(kOutputY, y_shape);
  std::vector<PredictionCounters> task_counters;
  if (g.batch * g.out_channels * g.out_height * g.out_width > 0) {
    const float* x_data = x.GetTensorData<float>();
    ConvTensors tensors;
    tensors.packed_weights = packed->per_output.data();
    tensors.bias = b != nullptr ? b.GetTensorData<float>() : nullptr;
    tensors.residual = z != nullptr ? z.GetTensorData<float>() : nullptr;
    tensors.output = y.GetTensorMutableData<float>();
    std::unique_ptr<float[]> input_nhwc;  // uninitialised: PadToNhwcRow writes every float
    if (path == ConvPath::kPlanes || path == ConvPath::kTiled) {  // they read a zero-padded NHWC copy
      const ChannelsToPixelsFn channels_to_pixels = tile_kernels_ ? tile_kernels_->channels_to_pixels : ChannelsToPixels;
      input_nhwc.reset(new float[static_cast<size_t>(g.batch * g.padded_height() * g.padded_width() * g.in_channels)]);
      ParallelFor(context, g.batch * g.padded_height(),
                  [&](int64_t row) { PadToNhwcRow(x_data, g, row, input_nhwc.get(), channels_to_pixels); });
      tensors.input_nhwc = input_nhwc.get();
    }
    const ConvCall call{g, attributes_.activation, pattern_, attributes_.margin, attributes_.audit, tensors};
    switch (path) {
      case ConvPath::kPlanes:
        task_counters = RunPlanes(context, call);
        break;
      case ConvPath::kPointwise:
        task_counters = RunTasks(context, PointwiseConv(call, *tile_kernels_, x_data));
        break;
      case ConvPath::kDepthwise:
        task_counters =
            RunTasks(context, DepthwiseConv(call, *depthwise_kernels_, x_data, packed->tiled.data()));
        break;
      case ConvPath::kTiled:
        task_counters = RunTiled(context, call, packed->tiled.data());
        break;
    }
  }

  if (context.GetOutputCount() > kOutputCounters) {
    Ort::UnownedValue counters_value = context.GetOutput(kOutputCounters, {contract::kCounterCount});
    if (counters_value != nullptr) {
      PredictionCounters total;
      for (const auto& c : task_counters) total += c;
      total.outputs = g.batch * g.out_channels * g.out_height * g.out_width;
      total.macs_dense = total.outputs * g.macs_per_output();
      if (!attributes_.audit) total.pred_hit = total.pred_miss = -1;
      int64_t* out = counters_value.GetTensorMutableData<int64_t>();
      const int64_t values[contract::kCounterCount] = {total.outputs,   total.zero_diag,  total.predicted,
                                                       total.pred_hit,  total.pred_miss,  total.macs_dense,
                                                       total.macs_executed};
      std::copy(values, values + contract::kCounterCount, out);
    }
  }
}

std::vector<PredictionCounters> PredictiveConvKernel::RunTiled(const Ort::KernelContext& context, const ConvCall& call,
                                                              const float* dense_weights) const {
  const TiledConv conv(call, *tile_kernels_, dense_weights);
  const int64_t sample_tasks = conv.SampleTasks();
  std::vector<PredictionCounters> counters(static_cast<size_t>(sample_tasks + conv.RestTasks()));
  ParallelFor(context, sample_tasks, [&](int64_t task) { counters[static_cast<size_t>(task)] = conv.RunSampleTask(task); });
  ParallelFor(context, conv.RestTasks(),
              [&](int64_t task) { counters[static_cast<size_t>(sample_tasks + task)] = conv.RunRestTask(task); });
  return counters;
}

PredictiveConvKernel::ConvPath PredictiveConvKernel::SelectPath(const ConvGeometry& g) const {
  if (tile_kernels_ == nullptr) return ConvPath::kPlanes;
  if (PointwiseConv::Applies(g, *tile_kernels_)) return ConvPath::kPointwise;
  if (IsDepthwiseLike(g)) return ConvPath::kDepthwise;
  return ConvPath::kTiled;
}

PredictiveConvKernel::PackedWeights PredictiveConvKernel::PackWeightsFor(ConvPath path, const float* weights,
                                                                         const ConvGeometry& g) const {
  PackedWeights packed;
  packed.path = path;
  if (path != ConvPath::kDepthwise) packed.per_output = PackWeights(weights, g);
  if (path == ConvPath::kTiled) packed.tiled = PackDenseWeights(weights, g, tile_kernels_->dense_channels);
  if (path == ConvPath::kDepthwise) packed.tiled = PackDepthwiseWeights(weights, g, depthwise_kernels_->lanes);
  return packed;
}

std::vector<PredictionCounters> PredictiveConvKernel::RunPlanes(const Ort::KernelContext& context,
                                                               const ConvCall& call) const {
  const ConvGeometry& g = call.geometry;
  std::vector<PredictionCounters> counters(static_cast<size_t>(g.batch * g.out_channels));
  ParallelFor(context, g.batch * g.out_channels, [&](int64_t plane) {
    counters[static_cast<size_t>(plane)] = ComputePlane(call, plane / g.out_channels, plane % g.out_channels);
  });
  return counters;
}

OrtStatusPtr PredictiveConvOp::CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
  std::string context = "PredictiveConv node";
  return StatusFromExceptions(context, [&] {
    context += " '" + Ort::ConstKernelInfo{info}.GetNodeName() + "'";
    *kernel = new PredictiveConvKernel(info, context);
  });
}

}  // namespace onnxpred
