// ReserveFd: the "reserve descriptor" answer to EMFILE in an event loop.
//
// When a process has used all the descriptors RLIMIT_NOFILE allows, accept(2)
// fails with EMFILE (ENFILE when the whole system is out) — but the connection
// stays in the listen backlog, fully established by the kernel. The listening
// socket therefore stays readable, and a level-triggered loop that just logs
// the error and goes back to select/poll/epoll_wait is woken again at once:
// 100% CPU, forever, doing nothing.
//
// The trick: keep one descriptor open on /dev/null for exactly this moment.
// When accept says EMFILE, close the reserve (one slot is free again), accept
// the pending connections and close them at once (the client sees EOF or a
// reset instead of a connection that hangs in the backlog), then reopen the
// reserve. The backlog drains, the listener stops being readable, the loop
// sleeps again, and the clients already being served never notice.
//
// The listening socket must be O_NONBLOCK: the shedding loop stops at EAGAIN.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "common/fd.hpp"

namespace iolab {

class Log;

class ReserveFd {
  public:
    // Opens /dev/null (O_RDONLY | O_CLOEXEC); throws SysError if it cannot.
    ReserveFd();

    [[nodiscard]] bool armed() const noexcept { return fd_.valid(); }
    [[nodiscard]] int get() const noexcept { return fd_.get(); }

    struct Outcome {
        std::size_t shed = 0;  // connections accepted and closed at once
        // true when nothing could be done now (ENOBUFS/ENOMEM, or the reserve
        // could not be taken back): the caller must stop watching the listener
        // for a moment rather than spin on it.
        bool pause = false;
    };

    // Call after accept(listen_fd) failed with an error for which
    // is_resource_exhaustion(err) is true. For EMFILE/ENFILE it frees the
    // reserve, accepts and closes up to `max` pending connections (until
    // EAGAIN), then reopens the reserve.
    Outcome shed(int listen_fd, int err, std::size_t max = 256);

  private:
    bool rearm() noexcept;
    Fd fd_;
};

// Says "accept HOST:PORT: Too many open files: N pending connections shed"
// at most once per `every`, so that a flood of connections does not also
// become a flood of log lines (and of CPU spent writing them).
class ShedReport {
  public:
    explicit ShedReport(std::chrono::milliseconds every = std::chrono::seconds(1))
        : every_(every) {}
    void note(const Log& log, std::string_view where, int err, std::size_t shed);
    [[nodiscard]] std::size_t total() const noexcept { return total_; }

  private:
    std::chrono::milliseconds every_;
    std::chrono::steady_clock::time_point last_{};
    std::size_t total_ = 0;
    std::size_t since_last_ = 0;
    bool logged_ = false;
};

}  // namespace iolab
