// Errors raised while validating or running an op, carried to onnxruntime as an OrtStatus.
#pragma once

#include <stdexcept>
#include <string>

#include "onnxruntime_cxx_api.h"

namespace onnxpred {

// A model or input that the op cannot run: reported as ORT_INVALID_ARGUMENT, never a crash.
class InvalidArgument : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Runs `body` and converts any exception into an OrtStatus whose message starts with `context`
// (the node's op type and name), so that the user learns which node failed and why.
template <typename Body>
OrtStatusPtr StatusFromExceptions(const std::string& context, Body&& body) noexcept {
  const OrtApi& api = Ort::GetApi();
  try {
    body();
    return nullptr;
  } catch (const InvalidArgument& e) {
    return api.CreateStatus(ORT_INVALID_ARGUMENT, (context + ": " + e.what()).c_str());
  } catch (const Ort::Exception& e) {
    return api.CreateStatus(e.GetOrtErrorCode(), (context + ": " + e.what()).c_str());
  } catch (const std::bad_alloc&) {
    return api.CreateStatus(ORT_FAIL, (context + ": out of memory").c_str());
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_FAIL, (context + ": " + e.what()).c_str());
  } catch (...) {
    return api.CreateStatus(ORT_FAIL, (context + ": unknown error").c_str());
  }
}

// Creates the kernel of an op of type `op_type` for `info`'s node, passing it the context of its
// errors ("<op_type> node '<name>'"); a failure, the name's lookup included, becomes the status.
template <typename Kernel>
OrtStatusPtr CreateKernelNamingTheNode(const char* op_type, const OrtKernelInfo* info, void** kernel) noexcept {
  std::string context = std::string(op_type) + " node";
  return StatusFromExceptions(context, [&] {
    context += " '" + Ort::ConstKernelInfo{info}.GetNodeName() + "'";
    *kernel = new Kernel(info, context);
  });
}

}  // namespace onnxpred
