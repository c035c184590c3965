// The poll(2) backend of dispatch-bench: watch descriptors for readability,
// wait, get back the keys of the ready ones. Siblings: backend_select.hpp,
// backend_epoll.hpp (see labs/03-multiplexing/BACKENDS.md).
//
// The interest set is an array of struct pollfd the program owns. poll()
// leaves fd and events alone and writes only revents, so the array is never
// rebuilt — but all of it crosses into the kernel and back on every wait, and
// the kernel calls every file's poll method: O(watched) per wait, with no
// FD_SETSIZE ceiling.
#pragma once

#include <poll.h>

#include <cerrno>
#include <cstddef>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"

namespace iolab::bench {

class PollBackend {
  public:
    // Watches `fd` for readability; wait() reports it as `key`.
    void add(int fd, std::size_t key) {
        slot_[fd] = fds_.size();
        fds_.push_back({fd, POLLIN, 0});
        keys_.push_back(key);
    }

    // The last entry moves into the removed one's place: the array stays dense.
    void remove(int fd) {
        auto it = slot_.find(fd);
        if (it == slot_.end()) return;
        const std::size_t i = it->second;
        slot_.erase(it);
        if (i + 1 != fds_.size()) {
            fds_[i] = fds_.back();
            keys_[i] = keys_.back();
            slot_[fds_[i].fd] = i;
        }
        fds_.pop_back();
        keys_.pop_back();
    }

    // One poll() with `timeout_ms` (0: do not sleep, -1: until one is ready);
    // the keys of the ready descriptors (valid until the next wait).
    std::span<const std::size_t> wait(int timeout_ms) {
        ready_.clear();
        int n = ::poll(fds_.data(), fds_.size(), timeout_ms);
        if (n < 0 && errno != EINTR) throw_sys("poll", "nfds " + std::to_string(fds_.size()));
        // Look at revents until all n are found.
        for (std::size_t i = 0; n > 0 && i < fds_.size(); ++i) {
            if (fds_[i].revents != 0) {
                --n;
                ready_.push_back(keys_[i]);
            }
        }
        return ready_;
    }

  private:
    std::vector<pollfd> fds_;        // the interest set, handed to poll() whole
    std::vector<std::size_t> keys_;  // keys_[i] belongs to fds_[i]
    std::unordered_map<int, std::size_t> slot_;
    std::vector<std::size_t> ready_;
};

}  // namespace iolab::bench
