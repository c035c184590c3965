// echo-epoll — readiness multiplexing with epoll(7): one thread, an interest set
// in the kernel, and a wait that returns only the ready descriptors.
//
// Usage: echo-epoll [--host 127.0.0.1] [--port 0] [--max-clients N] [--out-limit BYTES]
//                   [--edge] [--workers N] [-v]
//
// epoll splits the wait in two. epoll_ctl(ADD/MOD/DEL) edits an interest set
// kept inside the kernel (a red-black tree keyed by descriptor), once per
// change; for each registered socket the kernel hooks a callback into the
// socket's wait queue, and when the socket becomes ready — bytes arrive, send
// buffer space frees up — the callback puts it on the ready list.
// epoll_wait(2) just copies out that list: O(ready) per wait where select(2)
// and poll(2) are O(connections): with 19,000 idle and 10 busy, it costs 10.
//
// Level-triggered (the default): a socket is reported as long as it is ready
// (unread bytes, room to write), as by poll(2); one read per report will do.
// --edge (EPOLLET): it is reported when its state changes (new bytes, freed
// space), not while it stays ready; each handler goes on until EAGAIN, or
// the rest would never be reported (or for a budget of reads, after which
// the driver serves the client again next round: see LAB.md).
//
//                 epoll_ctl(ADD/MOD/DEL)          epoll_wait()
//   server  ───────────────────────────▶ kernel ◀──────────────── server
//                            interest set (rb-tree)   ready list ──▶ events[]
//      socket wakes up ──▶ ep_poll_callback ──▶ appended to the ready list
//
// The loop asks for write readiness only while a client's output queue
// (--out-limit) holds something, and stops asking for read readiness while
// the queue is full: backpressure (common/echo_session.hpp). The stop
// signalfd is watched like any socket. The kernel reports errors and hang-ups
// whether asked for or not (EPOLLERR, EPOLLHUP).
//
// This file is the model alone: a backend with three verbs (watch, forget,
// wait), as Redis has ae_select.c and ae_epoll.c. The loop, accepting
// (--max-clients, EMFILE shedding) and the echo are the same for every
// readiness lab: common/echo_driver.hpp, acceptor.hpp, echo_session.hpp
// (labs/03-multiplexing/BACKENDS.md).
// --workers N: N processes serve the port, each with its own SO_REUSEPORT
// listening socket (common/workers.hpp); --max-clients counts the clients of
// all of them together, and at the stop each accepts and counts (refused=)
// what still waits in its backlog.

#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using iolab::Ready;

// The interest set lives in the kernel: an epoll instance, edited with
// epoll_ctl(2) one descriptor at a time.
class EpollSet {
  public:
    explicit EpollSet(bool edge) : et_(edge ? EPOLLET : 0u), ep_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!ep_) iolab::throw_sys("epoll_create1", "echo-epoll");
    }

    std::string watch(int fd, bool read, bool write) {
        const auto f = static_cast<std::size_t>(fd);
        if (f >= mask_.size()) mask_.resize(f + 1, kNone);
        // [lab:watch]
        const uint32_t want = (read ? EPOLLIN : 0u) | (write ? EPOLLOUT : 0u) | et_;
        if (mask_[f] == want) return {};  // told the kernel only on change: a system call each
        // data.fd: what epoll_wait hands back. MOD re-checks the socket: bytes
        // already waiting are reported, even with --edge.
        epoll_event ev{.events = want, .data = {.fd = fd}};
        if (::epoll_ctl(ep_.get(), mask_[f] == kNone ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0)
            return "epoll_ctl: " + iolab::errno_text(errno);
        mask_[f] = want;
        return {};
        // [/lab:watch]
    }

    void forget(int fd) {
        ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);  // out of the set, then close
        mask_[static_cast<std::size_t>(fd)] = kNone;
    }

    template <class Fired>
    void wait(int timeout_ms, Fired&& fired) {
        // Sleep until something is ready; get back only the ready ones.
        // [lab:wait]
        const int n = ::epoll_wait(ep_.get(), events_, kMaxEvents, timeout_ms);
        if (n < 0 && errno == EINTR) return;
        if (n < 0) iolab::throw_sys("epoll_wait", "echo-epoll");
        // O(ready): the kernel kept the ready list as the sockets woke up.
        for (int i = 0; i < n; ++i) {
            const uint32_t ev = events_[i].events;
            fired(events_[i].data.fd, Ready{.read = (ev & EPOLLIN) != 0,
                                            .write = (ev & EPOLLOUT) != 0,
                                            .error = (ev & EPOLLERR) != 0,
                                            .hangup = (ev & EPOLLHUP) != 0});
        }
        // [/lab:wait]
    }

  private:
    static constexpr uint32_t kNone = UINT32_MAX;  // not in the set
    static constexpr int kMaxEvents = 1024;        // ready descriptors per call, at most
    const uint32_t et_;                            // EPOLLET with --edge, else 0
    iolab::Fd ep_;                                 // the epoll instance
    std::vector<uint32_t> mask_;                   // fd -> what the kernel holds for it
    epoll_event events_[kMaxEvents];               // epoll_wait's answer
};

}  // namespace

int main(int argc, char** argv) {
    auto options = [](CLI::App& app, iolab::EchoOptions& opts) {
        app.add_flag("--edge", opts.edge, "Edge-triggered (EPOLLET): drain every socket to EAGAIN");
        iolab::add_workers_option(app, opts.workers);
    };
    return iolab::echo_main(argc, argv, "echo-epoll",
                            "Echo server: one thread, epoll(7) (level-triggered, or --edge)",
                            options, [](const iolab::EchoOptions& o) { return EpollSet(o.edge); });
}
