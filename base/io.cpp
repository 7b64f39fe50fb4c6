#include "kiln/base/io.hpp"

#include "kiln/base/fd.hpp"

namespace kiln {

void FdSink::write(const void* data, size_t size) {
  write_all(fd_, data, size, what_);
}

}  // namespace kiln
