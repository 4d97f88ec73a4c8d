#pragma once
/// Opening a file for reading only when it is a regular file: a FIFO, a directory or a device
/// given where a data file or checkpoint is expected gets a DataError, never a hang. POSIX.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "../core/error.hpp"

namespace gradscope::detail {

/// What a file of mode `mode` is, for messages: "a directory", "a FIFO (named pipe)", ...
inline const char* file_kind(mode_t mode) noexcept {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

/// Opens `path` read-only and returns its descriptor once fstat on that descriptor says it is
/// a regular file (symbolic links are followed), with its status in `*status` when given. The
/// open cannot block (O_NONBLOCK, cleared again for the reads): opening a FIFO without a writer
/// would otherwise wait forever. DataError naming `what` (e.g. "IDX file 'train.gz'") when the
/// file cannot be opened or is a FIFO, a directory, a device or a socket.
inline int open_regular_file(const std::string& path, const std::string& what,
                             struct stat* status = nullptr) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) throw DataError(cat("cannot open ", what, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw DataError(cat("cannot stat ", what, ": ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw DataError(cat("cannot read ", what, ": it is ", file_kind(st.st_mode),
                        ", not a regular file"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(fd);
    throw DataError(cat("cannot read ", what, ": ", std::strerror(err)));
  }
  if (status) *status = st;
  return fd;
}

}  // namespace gradscope::detail
