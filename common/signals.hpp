// StopSignals: SIGINT and SIGTERM as something a program can wait on, instead
// of code that runs inside a signal handler.
//
// The constructor blocks SIGINT/SIGTERM in the calling thread, so it must run in
// main() before any thread is started: threads inherit the mask, and the
// signals then stay pending until someone reads them from the signalfd. Every
// I/O model can wait on that: select/poll/epoll add fd() to their interest set,
// io_uring submits a read on it, a blocking server parks a watcher thread on it.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

#include "common/fd.hpp"

namespace iolab {

class StopSignals {
  public:
    StopSignals();
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    // A signalfd: readable once SIGINT or SIGTERM is pending. Non-blocking.
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

    // Reads any pending stop signal (non-blocking); true once one has arrived.
    bool check();
    [[nodiscard]] bool requested() const noexcept { return requested_.load(); }
    // The signal that arrived (SIGINT or SIGTERM), 0 if none.
    [[nodiscard]] int signal_number() const noexcept { return signo_.load(); }

    // For blocking servers, whose threads sit in accept() or read() and cannot
    // poll the signalfd: starts a thread that waits for a stop signal and then
    // calls `on_stop` (which typically shuts down the listening socket and the
    // open connections so that those calls return). The returned Watch joins
    // that thread when it dies: declare it after everything `on_stop` touches,
    // so that it is destroyed first.
    class Watch {
      public:
        Watch(StopSignals& owner, std::function<void()> on_stop);
        ~Watch();
        Watch(const Watch&) = delete;
        Watch& operator=(const Watch&) = delete;

      private:
        StopSignals& owner_;
        std::thread thread_;
    };
    [[nodiscard]] Watch watch(std::function<void()> on_stop) {
        return Watch(*this, std::move(on_stop));
    }

    // Asks the program to stop as if a signal had arrived (tests, fatal errors).
    void request();

  private:
    Fd fd_;
    Fd wake_;  // eventfd used by request() and ~Watch to wake a watcher thread
    std::atomic<bool> requested_{false};
    std::atomic<int> signo_{0};
};

}  // namespace iolab
