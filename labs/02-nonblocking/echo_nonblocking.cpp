// echo-nonblocking — the non-blocking I/O model without any readiness call:
// one thread that tries everything, over and over.
//
// Usage: echo-nonblocking [--host 127.0.0.1] [--port 0] [--max-clients N]
//                         [--out-limit BYTES] [--idle-sleep-us N] [-v]
//
// Every socket is O_NONBLOCK, so no call ever puts the thread to sleep: when
// there is nothing to do, accept(2) and read(2) fail at once with EAGAIN, and
// write(2) takes only what fits in the send buffer (a short count, or EAGAIN
// when the buffer is full). One loop therefore serves all clients: each round
// it tries, for every client, to send what it still owes and to read what has
// arrived, then tries accept, then checks the stop signalfd. It never waits for
// the slowest client — and it never waits at all. With nothing to do it still
// makes one failing system call per client per round, as fast as the CPU
// allows: 100% of a core with zero clients (watch it in `top`).
//
// --idle-sleep-us N sleeps N microseconds after a round in which nothing
// happened. That gives the core back, but a byte that arrives during the
// sleep waits for it to end: latency bought with CPU, or CPU with latency.
// Telling the kernel "wake me when one of these is ready" is what select,
// poll and epoll (labs/03-multiplexing) add.
//
// A client whose output queue (--out-limit) is full is not read from until
// the queue drains (backpressure; common/echo_session.hpp).
//
//     ┌───────────────────────── one round ───────────────────────────┐
//     │ for each client: send(queued) → n | EAGAIN                     │
//     │                  read(fd)     → n | 0 (FIN) | EAGAIN | error   │
//     │ accept4(listener) → new fd | EAGAIN                            │
//     │ read(signalfd) → EAGAIN                                        │
//     │ nothing happened? usleep(--idle-sleep-us)                      │
//     └─────────────────────────── repeat ─────────────────────────────┘
//
// Linux notes: SIGINT/SIGTERM arrive on a non-blocking signalfd, read once per
// round.
//
// This file is the model alone: a backend with three verbs (watch, forget,
// wait), as Redis has ae_select.c and ae_epoll.c. The loop, accepting
// (--max-clients, EMFILE shedding) and the echo are the same for every
// readiness lab: common/echo_driver.hpp, acceptor.hpp, echo_session.hpp
// (labs/03-multiplexing/BACKENDS.md).

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "common/echo_server.hpp"
#include "common/fd_array.hpp"

namespace {

using iolab::Ready;

// No interest set for a kernel to use: a list of what to try, and a "wait"
// that does not wait — it reports every descriptor as ready for what it
// wants, and the call that follows (accept4, read, send) finds out.
class TryEverything {
  public:
    explicit TryEverything(unsigned idle_sleep_us) : idle_sleep_us_(idle_sleep_us) {}

    std::string watch(int fd, bool read, bool write) {
        // read: false while the client's output queue is full; write: true
        // while something is queued for it.
        list_.entry(fd, Ready{}) = Ready{.read = read, .write = write};
        return {};
    }

    void forget(int fd) { list_.erase(fd); }

    template <class Fired>
    void wait(int /*timeout_ms: nothing to wait in*/, Fired&& fired) {
        // One round: try everything. Most of these calls say EAGAIN.
        // Backwards: see common/fd_array.hpp for why that skips none.
        // [lab:wait]
        bool progress = false;
        std::vector<Ready>& all = list_.items();
        for (std::size_t i = all.size(); i-- > 0;) {
            const Ready want = all[i];
            if (want.read || want.write) progress |= fired(list_.fd_at(i), want);
        }
        // Nothing moved: all of those calls were wasted. Sleep, if asked to.
        if (!progress && idle_sleep_us_ > 0) ::usleep(idle_sleep_us_);
        // [/lab:wait]
    }

  private:
    unsigned idle_sleep_us_;
    iolab::FdArray<Ready> list_;  // every open descriptor, and what to try on it
};

}  // namespace

int main(int argc, char** argv) {
    unsigned idle_sleep_us = 0;
    auto options = [&](CLI::App& app, iolab::EchoOptions&) {
        app.add_option("--idle-sleep-us", idle_sleep_us,
                       "Microseconds to sleep after a round in which nothing happened")
            ->check(CLI::Range(0u, 1000000u))
            ->capture_default_str();
    };
    return iolab::echo_main(argc, argv, "echo-nonblocking",
                            "Echo server: non-blocking sockets, one busy loop, no readiness call",
                            options, [&](auto&) { return TryEverything(idle_sleep_us); });
}
