// The select(2) backend of dispatch-bench: watch descriptors for readability,
// wait, get back the keys of the ready ones. Siblings: backend_poll.hpp,
// backend_epoll.hpp — the same three verbs, side by side in
// labs/03-multiplexing/BACKENDS.md.
//
// The interest set is a bitmap the program owns. select() overwrites the set
// it is given with the ready subset, so every wait hands the kernel a copy;
// the kernel polls every descriptor below maxfd + 1, and says how many are
// ready, not which: the program tests the bits. O(maxfd) per wait, and no
// descriptor >= FD_SETSIZE (1024) can be watched at all.
#pragma once

#include <sys/select.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace iolab::bench {

class SelectBackend {
  public:
    SelectBackend() { FD_ZERO(&interest_); }

    // Watches `fd` for readability; wait() reports it as `key`.
    void add(int fd, std::size_t key) {
        // FD_SET past the bitmap writes out of bounds: refuse instead.
        if (fd < 0 || fd >= FD_SETSIZE) throw_sys("FD_SET", "fd " + std::to_string(fd), EBADF);
        FD_SET(fd, &interest_);
        watched_.push_back({fd, key});
        maxfd_ = std::max(maxfd_, fd);
    }

    void remove(int fd) {
        FD_CLR(fd, &interest_);
        std::erase_if(watched_, [fd](const Watched& w) { return w.fd == fd; });
        maxfd_ = -1;
        for (const Watched& w : watched_)
            maxfd_ = std::max(maxfd_, w.fd);
    }

    // One select() with `timeout_ms` (0: do not sleep); the keys of the
    // ready descriptors (valid until the next wait).
    std::span<const std::size_t> wait(int timeout_ms) {
        ready_.clear();
        fd_set readable = interest_;  // the copy select() may overwrite
        timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        int n = ::select(maxfd_ + 1, &readable, nullptr, nullptr, timeout_ms < 0 ? nullptr : &tv);
        if (n < 0 && errno != EINTR) throw_sys("select", "nfds " + std::to_string(maxfd_ + 1));
        // Test bits until all n are found.
        for (std::size_t i = 0; n > 0 && i < watched_.size(); ++i) {
            if (FD_ISSET(watched_[i].fd, &readable)) {
                --n;
                ready_.push_back(watched_[i].key);
            }
        }
        return ready_;
    }

  private:
    struct Watched {
        int fd;
        std::size_t key;
    };
    fd_set interest_;
    int maxfd_ = -1;
    std::vector<Watched> watched_;
    std::vector<std::size_t> ready_;
};

}  // namespace iolab::bench
