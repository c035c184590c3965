#include "common/fd.hpp"

#include <unistd.h>

namespace iolab {

void Fd::reset(int fd) noexcept {
    int old = std::exchange(fd_, fd);
    // close() is not retried on EINTR: on Linux the descriptor is released even
    // when close reports EINTR, and a retry could close a descriptor that another
    // thread has just been given.
    if (old >= 0) ::close(old);
}

}  // namespace iolab
