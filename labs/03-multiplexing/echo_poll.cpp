// echo-poll — readiness multiplexing with poll(2): one thread, one array of
// struct pollfd, and a wait that says which of them are ready.
//
// Usage: echo-poll [--host 127.0.0.1] [--port 0] [--max-clients N] [--out-limit BYTES] [-v]
//
// The program keeps an array of {fd, events, revents}: for every descriptor,
// what it waits for (POLLIN: bytes to read or a connection to accept;
// POLLOUT: room in the send buffer). poll(2) copies the whole array into the
// kernel, calls each socket's poll method — and if none is ready, hooks the
// thread onto every socket's wait queue and sleeps until one of them wakes it
// — then copies the array back with revents filled in. Unlike select(2) there
// is no FD_SETSIZE ceiling and nothing to rebuild: `events` survives the call,
// and the program edits the array only when a client comes, goes, or changes
// what it waits for. Like select(2), each call costs O(array size): with
// 19,000 idle connections and one busy one, every wakeup walks 19,000 entries.
//
//   pollfd[]  { listener POLLIN } { signalfd POLLIN } { c1 POLLIN } { c2 POLLIN|POLLOUT } ...
//        │  poll(fds, n, -1)  — copied in, every entry checked, copied out
//        ▼
//   revents   {      POLLIN     } {        0        } {     0     } {      POLLOUT       } ...
//
// The loop asks for write readiness only while a client's output queue
// (--out-limit) holds something, and stops asking for read readiness while
// the queue is full: backpressure (common/echo_session.hpp). The stop
// signalfd is watched like any socket. The kernel reports errors and hang-ups
// whether asked for or not (POLLERR, POLLHUP; POLLNVAL: not a descriptor).
//
// This file is the model alone: a backend with three verbs (watch, forget,
// wait), as Redis has ae_select.c and ae_epoll.c. The loop, accepting
// (--max-clients, EMFILE shedding) and the echo are the same for every
// readiness lab: common/echo_driver.hpp, acceptor.hpp, echo_session.hpp
// (labs/03-multiplexing/BACKENDS.md).

#include <poll.h>

#include <CLI/CLI.hpp>
#include <utility>
#include <vector>

#include "common/echo_server.hpp"
#include "common/error.hpp"
#include "common/fd_array.hpp"

namespace {

using iolab::Ready;

// The interest set is an array we own, handed to poll() whole every time.
class PollSet {
  public:
    std::string watch(int fd, bool read, bool write) {
        // A new descriptor gets one more entry at the end of the array. What
        // it waits for in the next poll(): a store in our own array, no
        // system call (the whole array goes to the kernel anyway).
        fds_.entry(fd, pollfd{fd, 0, 0}).events =
            static_cast<short>((read ? POLLIN : 0) | (write ? POLLOUT : 0));
        return {};
    }

    // The last entry moves into this one's place: the array stays dense (its
    // length is what every poll() costs).
    void forget(int fd) { fds_.erase(fd); }

    template <class Fired>
    void wait(int timeout_ms, Fired&& fired) {
        // The whole array goes in; every entry's revents comes back.
        // [lab:wait]
        std::vector<pollfd>& a = fds_.items();
        const int n = ::poll(a.data(), a.size(), timeout_ms);
        if (n < 0 && errno == EINTR) return;
        if (n < 0) iolab::throw_sys("poll", std::to_string(a.size()) + " descriptors");
        // Every revents must be looked at: O(watched), however few are ready.
        // Backwards: see common/fd_array.hpp for why that skips none.
        for (std::size_t i = a.size(); i-- > 0;) {
            const auto ev = static_cast<unsigned>(std::exchange(a[i].revents, 0));
            if (ev == 0) continue;
            fired(a[i].fd, Ready{.read = (ev & POLLIN) != 0,
                                 .write = (ev & POLLOUT) != 0,
                                 .error = (ev & (POLLERR | POLLNVAL)) != 0,
                                 .hangup = (ev & POLLHUP) != 0});
        }
        // [/lab:wait]
    }

  private:
    iolab::FdArray<pollfd> fds_;  // the interest set
};

}  // namespace

int main(int argc, char** argv) {
    return iolab::echo_main(argc, argv, "echo-poll", "Echo server: one thread, poll(2)",
                            iolab::no_more_options, [](auto&) { return PollSet(); });
}
