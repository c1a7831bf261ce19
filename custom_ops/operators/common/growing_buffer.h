// Scratch memory an op keeps between its calls: it grows to the largest size asked of it and is
// never filled. (std::vector::resize zero-fills the part it grows by, even within its capacity: where
// layers of different sizes take turns on a thread, as in any model, every call of the larger ones
// paid for filling the difference.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace onnxpred {

class GrowingBuffer {
 public:
  uint8_t* Get(size_t bytes) {
    if (bytes > size_) {
      data_.reset(new uint8_t[bytes]);  // default-initialized: not filled
      size_ = bytes;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

}  // namespace onnxpred
