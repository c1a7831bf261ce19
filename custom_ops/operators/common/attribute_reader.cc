#include "operators/common/attribute_reader.h"

#include <cmath>
#include <sstream>

namespace onnxpred {
namespace {

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

}  // namespace

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

std::string Number(double value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

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

}  // namespace onnxpred
