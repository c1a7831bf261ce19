#include "operators/common/conv_attributes.h"

#include "op_contract.h"
#include "operators/common/attribute_reader.h"

namespace onnxpred {

ConvShapeAttributes ReadConvShapeAttributes(const OrtKernelInfo* info) {
  namespace c = contract;
  ConvShapeAttributes a;
  a.kernel_shape = Read<c::kKernelShape>(info);
  a.strides = Read<c::kStrides>(info);
  a.pads = Read<c::kPads>(info);
  a.dilations = Read<c::kDilations>(info);
  a.group = Read<c::kGroup>(info);
  return a;
}

ConvGeometry ResolveConvGeometry(const ConvShapeAttributes& a, const std::vector<int64_t>& x,
                                 const std::vector<int64_t>& w) {
  if (x.size() != 4) throw InvalidArgument("input X must be 4-D [N, C, H, W], got shape " + ShapeString(x));
  if (w.size() != 4) throw InvalidArgument("input W must be 4-D [M, C/group, kH, kW], got shape " + ShapeString(w));
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


}  // namespace onnxpred
