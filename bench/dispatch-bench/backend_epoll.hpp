// The epoll(7) backend of dispatch-bench: watch descriptors for readability,
// wait, get back the keys of the ready ones. Siblings: backend_select.hpp,
// backend_poll.hpp (see labs/03-multiplexing/BACKENDS.md).
//
// The interest set lives in the kernel, behind a descriptor: epoll_ctl edits
// it once per change, and a file that becomes ready puts itself on the
// instance's ready list through a wakeup callback. epoll_wait copies out only
// that list, and each entry carries the key given at registration (data.u64),
// so no lookup is needed: O(ready) per wait, however many are watched.
// Level-triggered here, like select, poll and libevent's default.
#pragma once

#include <sys/epoll.h>

#include <cerrno>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace iolab::bench {

class EpollBackend {
  public:
    EpollBackend() : ep_(::epoll_create1(EPOLL_CLOEXEC)), events_(4096) {
        if (!ep_) throw_sys("epoll_create1");
    }

    // Watches `fd` for readability; wait() reports it as `key`.
    void add(int fd, std::size_t key) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = key;
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            throw_sys("epoll_ctl ADD", "fd " + std::to_string(fd));
    }

    void remove(int fd) { ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr); }

    // One epoll_wait() with `timeout_ms` (0: do not sleep, -1: until one is
    // ready); the keys of the ready descriptors (valid until the next wait).
    // At most 4,096 per wait; the others stay on the ready list for the next.
    std::span<const std::size_t> wait(int timeout_ms) {
        ready_.clear();
        int n =
            ::epoll_wait(ep_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
        if (n < 0 && errno != EINTR) throw_sys("epoll_wait", "epfd " + std::to_string(ep_.get()));
        for (int i = 0; i < n; ++i) {
            // epoll_event is packed on x86-64: copy the key out rather than
            // bind a reference to the misaligned member.
            const std::size_t key = events_[static_cast<std::size_t>(i)].data.u64;
            ready_.push_back(key);
        }
        return ready_;
    }

  private:
    Fd ep_;
    std::vector<epoll_event> events_;
    std::vector<std::size_t> ready_;
};

}  // namespace iolab::bench
