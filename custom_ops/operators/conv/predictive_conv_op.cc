#include "operators/conv/predictive_conv_op.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <sstream>

#include "op_contract.h"
#include "operators/common/attribute_reader.h"
#include "operators/common/counters_output.h"
#include "operators/common/growing_buffer.h"
#include "operators/common/op_error.h"
#include "operators/common/parallel_for.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/direct_conv.h"
#include "operators/conv/pointwise_conv.h"
#include "operators/conv/tiled_conv.h"

namespace onnxpred {
namespace {

constexpr size_t kInputX = 0, kInputW = 1, kInputB = 2, kInputZ = 3;
constexpr size_t kOutputY = 0, kOutputCounters = 1;

PredictiveConvAttributes ReadAttributes(const OrtKernelInfo* info) {
  namespace c = contract;
  PredictiveConvAttributes a;
  static_cast<ConvShapeAttributes&>(a) = ReadConvShapeAttributes(info);
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
  return ResolveConvGeometry(attributes_, x, w);
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
  Ort::UnownedValue counters = CountersOutput(context, kOutputCounters);
  const bool counting = counters != nullptr;
  std::vector<PredictionCounters> task_counters;
  if (g.batch * g.out_channels * g.out_height * g.out_width > 0) {
    const float* x_data = x.GetTensorData<float>();
    ConvTensors tensors;
    tensors.packed_weights = packed->per_output.data();
    tensors.bias = b != nullptr ? b.GetTensorData<float>() : nullptr;
    tensors.residual = z != nullptr ? z.GetTensorData<float>() : nullptr;
    tensors.output = y.GetTensorMutableData<float>();
    if (path == ConvPath::kPlanes || path == ConvPath::kTiled) {  // they read a zero-padded NHWC copy
      const ChannelsToPixelsFn channels_to_pixels = tile_kernels_ ? tile_kernels_->channels_to_pixels : ChannelsToPixels;
      // Kept per thread between calls, like the int8 op's copy; not filled: PadToNhwcRow writes every float.
      thread_local GrowingBuffer copy_buffer;
      const size_t floats = static_cast<size_t>(g.batch * g.padded_height() * g.padded_width() * NhwcPixelFloats(g));
      float* input_nhwc = reinterpret_cast<float*>(copy_buffer.Get(floats * sizeof(float)));
      ParallelFor(context, g.batch * g.padded_height(),
                  [&](int64_t row) { PadToNhwcRow(x_data, g, row, input_nhwc, channels_to_pixels); });
      tensors.input_nhwc = input_nhwc;
    }
    const ConvCall call{g, attributes_.activation, pattern_, attributes_.margin, attributes_.audit, counting, tensors};
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
      case ConvPath::kDirect: {
        const DirectConv conv(call, *tile_kernels_, x_data);
        ParallelFor(context, conv.CopyTasks(), [&](int64_t row) { conv.CopyInputRow(row); });
        task_counters = RunTasks(context, conv);
        break;
      }
      case ConvPath::kTiled:
        task_counters = RunTiled(context, call, packed->tiled.data());
        break;
    }
  }

  WriteCounters(counters, task_counters, g, attributes_.audit);
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
  if (DirectConv::Applies(g, *tile_kernels_)) return ConvPath::kDirect;
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

const char* PredictiveConvOp::GetName() const { return contract::kPredictiveConvOpType; }

OrtStatusPtr PredictiveConvOp::CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
  return CreateKernelNamingTheNode<PredictiveConvKernel>(contract::kPredictiveConvOpType, info, kernel);
}

}  // namespace onnxpred
