// Byte streams between modules: a layer writer produces bytes, the store or a file consumes them.
#pragma once

#include <cstddef>
#include <string>

namespace kiln {

// Something that accepts a stream of bytes. write() either takes all bytes or throws
// kiln::Error. Implementations need not be thread-safe: one producer writes at a time.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t size) = 0;
};

// A sink that writes to a file descriptor it does not own.
class FdSink : public ByteSink {
 public:
  FdSink(int fd, std::string what) : fd_(fd), what_(std::move(what)) {}
  void write(const void* data, size_t size) override;

 private:
  int fd_;
  std::string what_;
};

// A sink that keeps what it is given in `bytes`: for small documents (a config, a signature),
// whose size the producer bounds.
class StringSink : public ByteSink {
 public:
  void write(const void* data, size_t size) override {
    bytes.append(static_cast<const char*>(data), size);
  }
  std::string bytes;
};

}  // namespace kiln
