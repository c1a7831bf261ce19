// The Conv attributes both ops share (kernel_shape, strides, pads, dilations, group), read through the
// contract, and the geometry of a call resolved from them and the shapes of X and W.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "onnxruntime_cxx_api.h"
#include "operators/conv/conv_geometry.h"

namespace onnxpred {

struct ConvShapeAttributes {
  std::optional<std::vector<int64_t>> kernel_shape;
  std::vector<int64_t> strides;
  std::vector<int64_t> pads;  // top, left, bottom, right
  std::vector<int64_t> dilations;
  int64_t group;
};

ConvShapeAttributes ReadConvShapeAttributes(const OrtKernelInfo* info);

// The geometry of X [N, C, H, W] convolved with W [M, C/group, kH, kW]; InvalidArgument naming what
// does not fit (ranks, channels, kernel_shape, a kernel larger than the padded input, overflow).
ConvGeometry ResolveConvGeometry(const ConvShapeAttributes& a, const std::vector<int64_t>& x,
                                 const std::vector<int64_t>& w);

}  // namespace onnxpred
