// Shared by the fuzz targets: the input as a file (memfd, so no disk and no cleanup), since the
// readers under test open paths.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace rf::fuzz {

struct MemFile {
  int fd = -1;
  std::string path;
  MemFile(const uint8_t* data, size_t size) {
    fd = memfd_create("recforge-fuzz", MFD_CLOEXEC);
    if (fd < 0) return;
    for (size_t off = 0; off < size;) {
      ssize_t w = write(fd, data + off, size - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  ~MemFile() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace rf::fuzz
