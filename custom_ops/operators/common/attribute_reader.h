// Reads a node's attributes through the generated contract table (op_contract.h): Read<spec>(info)
// returns the attribute, checked against its type, range and choices, or the contract's default. Both
// ops read every attribute this way, so a name, default or limit lives in op_contract.json alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "onnxruntime_cxx_api.h"
#include "operators/common/attribute_spec.h"
#include "operators/common/op_error.h"
#include "operators/common/shapes.h"

namespace onnxpred {

// The attribute `name` with its ONNX type, or nullopt when absent; InvalidArgument when present with another type.
std::optional<int64_t> IntAttribute(const OrtKernelInfo* info, const char* name);
std::optional<float> FloatAttribute(const OrtKernelInfo* info, const char* name);
std::optional<std::string> StringAttribute(const OrtKernelInfo* info, const char* name);
std::optional<std::vector<int64_t>> IntsAttribute(const OrtKernelInfo* info, const char* name);

std::string Number(double value);
// `shown` is the value as the message prints it; `verb` "be" for a number, "hold values" for a list.
void CheckRange(const AttributeSpec& spec, double value, const char* verb, const std::string& shown);
[[noreturn]] void NotAChoice(const AttributeSpec& spec, const std::string& value);

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

}  // namespace onnxpred
