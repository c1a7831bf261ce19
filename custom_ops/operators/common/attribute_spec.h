// One attribute of the op contract, as the generated table (op_contract.h, from
// onnxpred/op_contract.json by custom_ops/cmake/OpContract.cmake) spells it.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>

namespace onnxpred {

enum class AttributeType { kInt, kFloat, kString, kInts };

struct AttributeSpec {
  const char* name;
  AttributeType type;
  int64_t count;                 // the number of values of an kInts attribute; 0 otherwise
  bool has_default;              // false: absent means "not given" (kernel_shape)
  double default_number;         // kInt and kFloat
  const char* default_string;    // kString
  const int64_t* default_ints;   // kInts, `count` values
  const char* const* choices;    // kString: the allowed values, or null for any
  int64_t choice_count;
  std::optional<double> minimum, maximum, exclusive_minimum;  // of a number or of every kInts value
  bool finite;                   // kFloat: rejects +-inf (NaN is rejected by every range)
};

}  // namespace onnxpred
