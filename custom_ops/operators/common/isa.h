// Which instruction set a kernel table is chosen for: the best the CPU runs, or the one the
// ONNXPRED_KERNEL variable names. Both ops choose their tables through this one rule.
#pragma once

#include <string>

namespace onnxpred {

enum class Isa { kPortable, kAvx2, kAvx512 };

// `request` is ONNXPRED_KERNEL's value: "auto" (or empty) for the best of `has_avx512`/`has_avx2`,
// "avx512", "avx2", or "portable" ("scalar" too: the op decides what its scalar path is). Throws
// InvalidArgument for an unknown name or an instruction set this CPU (or build) lacks.
Isa ChooseIsa(const std::string& request, bool has_avx512, bool has_avx2);

}  // namespace onnxpred
