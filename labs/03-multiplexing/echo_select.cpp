// echo-select — readiness multiplexing with select(2), the oldest form: one
// thread, bitmaps of descriptors, one system call that says which are ready.
//
// Usage: echo-select [--host 127.0.0.1] [--port 0] [--max-clients N]
//                    [--out-limit BYTES] [-v]
//
// An fd_set is a bitmap with one bit per descriptor number. The program sets
// the bits it cares about — readfds: tell me when a read (or accept) would not
// block; writefds: tell me when a write would not block — and passes
// maxfd + 1, the number of bits to look at. The kernel copies the bitmaps in,
// calls the poll method of every descriptor whose bit is set, sleeps on all of
// their wait queues if none is ready, and on wakeup overwrites the bitmaps
// with the answer: only the ready bits are left. That is why the program keeps
// its own master sets and hands select() a copy every time. Cost: O(maxfd)
// per call in the kernel and again in the program, which must test every bit.
// (glibc issues select(3) as the pselect6 system call: strace shows that name.)
//
// The hard limit: glibc's fd_set has FD_SETSIZE = 1024 bits. FD_SET(1500, &s)
// writes past the end of the structure — memory corruption, not an error
// code. A select server must therefore refuse any connection whose
// descriptor number is >= FD_SETSIZE; this one closes it at once, says so
// in a log line, and keeps serving the clients it has.
//
// The loop sets a client's writefds bit only while its output queue
// (--out-limit) holds something, and clears its readfds bit while the queue
// is full (backpressure; common/echo_session.hpp).
//
//   readfds  (in)   0 0 0 1 1 0 1 1 1 ... (listener, signalfd, clients)
//   writefds (in)   0 0 0 0 0 0 0 1 0 ...  (clients with queued output)
//            select(maxfd + 1, &readfds, &writefds, NULL, NULL)
//   readfds  (out)  0 0 0 0 1 0 0 0 1 ...  only the ready bits survive
//
// Linux notes: the stop signalfd is one more bit in readfds.
//
// This file is the model alone: a backend with three verbs (watch, forget,
// wait), as Redis has ae_select.c and ae_epoll.c. The loop, accepting
// (--max-clients, EMFILE shedding) and the echo are the same for every
// readiness lab: common/echo_driver.hpp, acceptor.hpp, echo_session.hpp
// (labs/03-multiplexing/BACKENDS.md).

#include <sys/select.h>

#include <CLI/CLI.hpp>
#include <string>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using iolab::Ready;

// The interest set: two bitmaps of our own (the masters), copied for every
// select() because select() writes its answer over them.
class SelectSet {
  public:
    SelectSet() {
        FD_ZERO(&read_);
        FD_ZERO(&write_);
    }

    std::string watch(int fd, bool read, bool write) {
        // FD_SET would write outside the fd_set: refuse (the driver closes the
        // connection, says why, and goes on serving the clients already here).
        if (fd >= FD_SETSIZE)
            return "descriptor " + std::to_string(fd) + " >= FD_SETSIZE (" +
                   std::to_string(FD_SETSIZE) + "), select() cannot watch it";
        // [lab:watch]
        if (read)
            FD_SET(fd, &read_);
        else
            FD_CLR(fd, &read_);
        if (write)
            FD_SET(fd, &write_);
        else
            FD_CLR(fd, &write_);
        if (fd > maxfd_) maxfd_ = fd;
        // [/lab:watch]
        return {};
    }

    void forget(int fd) {
        FD_CLR(fd, &read_);
        FD_CLR(fd, &write_);
        // The highest descriptor closed: look down for the next one set.
        while (maxfd_ >= 0 && !FD_ISSET(maxfd_, &read_) && !FD_ISSET(maxfd_, &write_))
            --maxfd_;
    }

    template <class Fired>
    void wait(int timeout_ms, Fired&& fired) {
        // [lab:wait]
        fd_set r = read_, w = write_;  // select() overwrites them with its answer
        // NULL: sleep until something is ready (a timeout only while
        // accepting is paused).
        timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        const int top = maxfd_;
        const int n = ::select(top + 1, &r, &w, nullptr, timeout_ms < 0 ? nullptr : &tv);
        if (n < 0 && errno == EINTR) return;
        if (n < 0) iolab::throw_sys("select", "maxfd " + std::to_string(top));
        // Test every bit up to maxfd: O(maxfd) whatever n is. select() has no
        // separate error report: a reset shows up as "readable", and the read
        // that follows returns the error.
        for (int fd = 0; fd <= top; ++fd) {
            const bool rd = FD_ISSET(fd, &r), wr = FD_ISSET(fd, &w);
            if (rd || wr) fired(fd, Ready{.read = rd, .write = wr});
        }
        // [/lab:wait]
    }

  private:
    fd_set read_, write_;  // the masters: what we watch for
    int maxfd_ = -1;       // the highest descriptor in either
};

}  // namespace

int main(int argc, char** argv) {
    return iolab::echo_main(
        argc, argv, "echo-select",
        "Echo server: one thread, select(2) (descriptors below FD_SETSIZE only)",
        iolab::no_more_options, [](auto&) { return SelectSet(); });
}
