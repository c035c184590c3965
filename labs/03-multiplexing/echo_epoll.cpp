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
// the rest would never be reported.
//
//                 epoll_ctl(ADD/MOD/DEL)          epoll_wait()
//   server  ───────────────────────────▶ kernel ◀──────────────── server
//                            interest set (rb-tree)   ready list ──▶ events[]
//      socket wakes up ──▶ ep_poll_callback ──▶ appended to the ready list
//
// The loop asks for write readiness only while a client's output queue
// (--out-limit) holds something, and stops asking for read readiness while
// the queue is full: backpressure (common/echo_session.hpp). Accepting,
// EMFILE shedding and --max-clients: common/acceptor.hpp. The stop signalfd
// is watched like any socket. The kernel reports errors and hang-ups
// whether asked for or not (EPOLLERR, EPOLLHUP).
// --workers N: N processes serve the port, each with its own SO_REUSEPORT
// listening socket (common/workers.hpp).

#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using namespace iolab;

class Server {
  public:
    explicit Server(EchoLoop& loop) : loop_(loop), et_(loop.edge ? EPOLLET : 0u) {}

    void run() {
        // The interest set lives in the kernel; a paused listener asks for 0.
        ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep_ || !ctl(EPOLL_CTL_ADD, loop_.acceptor.fd(), EPOLLIN | et_) ||
            !ctl(EPOLL_CTL_ADD, loop_.stop.fd(), EPOLLIN))
            throw_sys("epoll_ctl", loop_.acceptor.where());
        loop_.acceptor.on_watch(
            [&](bool on) { ctl(EPOLL_CTL_MOD, loop_.acceptor.fd(), on ? EPOLLIN | et_ : 0); });

        epoll_event events[1024];  // at most this many ready per call
        while (!loop_.stop.requested()) {
            // Sleep until something is ready; get back only the ready ones.
            int n = ::epoll_wait(ep_.get(), events, 1024, loop_.acceptor.timeout_ms());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("epoll_wait", loop_.acceptor.where());
            loop_.acceptor.resume_due();
            // O(ready); each fd comes once per call, so none is seen after its close.
            for (int i = 0; i < n; ++i) {
                const unsigned ev = events[i].events;
                auto serve = [&](Client& c) { client_ready(c, ev); };
                loop_.dispatch(
                    events[i].data.fd, [&] { accept_ready(); }, serve);
            }
        }
    }

  private:
    void accept_ready() {
        auto admit = [&](Fd& fd, const std::string& peer) {
            // Into the kernel's interest set: "tell me when it is readable".
            if (!ctl(EPOLL_CTL_ADD, fd.get(), EPOLLIN | et_))
                return "epoll_ctl: " + errno_text(errno);
            loop_.clients.open(std::move(fd), peer).registered = EPOLLIN | et_;
            return std::string();
        };
        // Level: a batch (reported again if more wait). Edge: all, until EAGAIN.
        loop_.acceptor.accept_batch(loop_.clients.size(), et_ ? SIZE_MAX : kAcceptBatch, admit);
    }

    void client_ready(Client& c, unsigned ev) {
        Next n = loop_.session.serve(c, ev & EPOLLIN, ev & EPOLLOUT, ev & EPOLLERR, ev & EPOLLHUP);
        if (!n.close.empty()) return close(c, n.close);
        // Told to the kernel only on change (a system call each). MOD re-checks
        // the socket: bytes already waiting are reported, even with --edge.
        const uint32_t want = (n.read ? EPOLLIN : 0u) | (n.write ? EPOLLOUT : 0u) | et_;
        if (want != c.registered && !ctl(EPOLL_CTL_MOD, c.fd.get(), want))
            return close(c, "epoll_ctl: " + errno_text(errno));
        c.registered = want;
    }

    void close(Client& c, const std::string& why) {
        ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);  // out of the set, then close
        loop_.clients.close(c, why);
    }

    bool ctl(int op, int fd, uint32_t events) {
        epoll_event ev{.events = events, .data = {.fd = fd}};  // data: what epoll_wait returns
        return ::epoll_ctl(ep_.get(), op, fd, &ev) == 0;
    }

    EchoLoop& loop_;
    const uint32_t et_;  // EPOLLET with --edge, else 0
    Fd ep_;              // the epoll instance
};

}  // namespace

int main(int argc, char** argv) {
    iolab::EchoOptions opts;
    CLI::App app{"Echo server: one thread, epoll(7) (level-triggered, or --edge)"};
    iolab::add_echo_options(app, "echo-epoll", opts);
    app.add_flag("--edge", opts.edge, "Edge-triggered (EPOLLET): drain every socket to EAGAIN");
    iolab::add_workers_option(app, opts.workers);
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-epoll", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        return iolab::serve_echo(opts, stop, [](iolab::EchoLoop& loop) { Server(loop).run(); });
    });
}
