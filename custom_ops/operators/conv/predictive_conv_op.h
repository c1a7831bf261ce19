// PredictiveConv (domain ai.onnxpred, version 1): Conv (+ residual) + Relu/Clip(0, max) that
// computes the sampled outputs of each k x k window first and skips the rest of a window when
// they trigger. Semantics: docs/predictive_conv.md and onnxpred/reference.py.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "onnxruntime_cxx_api.h"
#include "operators/common/conv_attributes.h"
#include "operators/conv/conv_geometry.h"
#include "operators/conv/depthwise_conv.h"
#include "operators/conv/packed_floats.h"
#include "operators/conv/predictive_conv_kernel.h"
#include "operators/conv/tile_kernels.h"
#include "operators/conv/window_pattern.h"

namespace onnxpred {

// The library is written against C API 21 (onnxruntime 1.21) and asks for no newer one, so that
// it loads in every runtime from 1.21 on, whatever headers it was compiled with.
constexpr uint32_t kOrtApiVersion = 21;

// Attributes of a node, read and validated through the contract's table (op_contract.h) once
// when its kernel is created; the defaults are the table's.
struct PredictiveConvAttributes : ConvShapeAttributes {
  int64_t window;
  std::string pattern;
  float margin;
  ActivationParams activation;
  bool audit;
};

class PredictiveConvKernel {
 public:
  PredictiveConvKernel(const OrtKernelInfo* info, std::string context);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept;

 private:
  void Compute(OrtKernelContext* context) const;
  ConvGeometry ResolveGeometry(const std::vector<int64_t>& x_shape, const std::vector<int64_t>& w_shape) const;
  // Which kernel serves a convolution. It depends only on W and the attributes, so the weights
  // can be packed for it once, and packing and dispatch cannot disagree.
  enum class ConvPath {
    kPlanes,     // the simple per-plane kernel: everything under ONNXPRED_KERNEL=scalar
    kPointwise,  // 1x1, stride 1, unpadded, ungrouped: a GEMM from NCHW, then the window rule
    kDepthwise,  // one input channel per group
    kDirect,     // ungrouped, runs under three vectors (3-channel stems): rows from NCHW, then the window rule
    kTiled,      // every other convolution: dense sample tiles, then per-window gather tiles
  };
  ConvPath SelectPath(const ConvGeometry& geometry) const;

  // W in the layouts `path` reads.
  struct PackedWeights {
    ConvPath path = ConvPath::kPlanes;
    PackedFloats per_output;  // [M][kH][kW][C/group]: the plane, pointwise, direct and gather kernels
    PackedFloats tiled;       // PackDenseWeights or PackDepthwiseWeights
    // Every path but the depthwise one packs per_output, which is all the plane, pointwise and
    // direct paths read.
    bool Serves(ConvPath other) const {
      const bool per_output_only =
          other == ConvPath::kPlanes || other == ConvPath::kPointwise || other == ConvPath::kDirect;
      return other == path || (per_output_only && path != ConvPath::kDepthwise);
    }
  };
  PackedWeights PackWeightsFor(ConvPath path, const float* weights, const ConvGeometry& geometry) const;

  std::vector<PredictionCounters> RunPlanes(const Ort::KernelContext& context, const ConvCall& call) const;
  std::vector<PredictionCounters> RunTiled(const Ort::KernelContext& context, const ConvCall& call,
                                           const float* dense_weights) const;

  std::string context_;  // "PredictiveConv node '<name>'", the prefix of every error
  PredictiveConvAttributes attributes_;
  WindowPattern pattern_;
  std::vector<int64_t> constant_weight_shape_;
  const TileKernels* tile_kernels_ = nullptr;   // null: per-plane path only
  const DepthwiseKernels* depthwise_kernels_ = nullptr;  // of the same instruction set
  PackedWeights constant_weights_;  // packed once when W is a constant initializer
};

struct PredictiveConvOp : Ort::CustomOpBase<PredictiveConvOp, PredictiveConvKernel, /*WithStatus=*/true> {
  PredictiveConvOp() { OrtCustomOp::version = kOrtApiVersion; }

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;
  const char* GetName() const;

  // X, W, B, Z. Their types are checked by the kernel so that a wrong one names the node.
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index < 2 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }

  // Y and the optional int64[7] counters.
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t index) const {
    return index == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t index) const {
    return index == 0 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
};

}  // namespace onnxpred
