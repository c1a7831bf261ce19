// Shape helpers shared by the ops: printing shapes in errors and overflow-checked size arithmetic.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "operators/common/op_error.h"

namespace onnxpred {

inline std::string ShapeString(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

inline int64_t CheckedMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw InvalidArgument("tensor sizes overflow a 64-bit integer");
  return r;
}

inline int64_t CheckedAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw InvalidArgument("tensor sizes overflow a 64-bit integer");
  return r;
}

}  // namespace onnxpred
