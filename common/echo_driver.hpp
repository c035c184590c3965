// The driver of the readiness labs (echo-nonblocking, -select, -poll, -epoll):
// one loop, written once, over a backend that is the lab's own file — the
// split of Redis's ae.c (the loop) and ae_select.c / ae_epoll.c (one small
// file per way of waiting).
//
// A backend is a class with three verbs, and nothing else:
//
//   std::string watch(int fd, bool read, bool write)
//       Start or change watching fd: for readability, writability, both, or
//       neither (still known, not reported). "" when done, else why not
//       (select: "descriptor 1100 >= FD_SETSIZE"; epoll: the epoll_ctl error).
//   void forget(int fd)
//       Stop watching fd; called before it is closed.
//   template <class Fired> void wait(int timeout_ms, Fired&& fired)
//       Wait until something watched is ready (or timeout_ms passes; -1: no
//       limit), then call fired(fd, Ready) for each ready descriptor. fired
//       may call watch() and forget() (a client closes, a new one arrives),
//       so a backend walks its own state in a way that survives that. EINTR:
//       return early, the driver calls again. fired returns true when bytes
//       moved or a connection came or went (echo-nonblocking sleeps after a
//       round without any).
//
// The driver registers the stop signalfd and the listener, then repeats:
// wait; for each ready descriptor, read the signalfd, accept a batch (the
// acceptor: --max-clients, EMFILE shedding), or serve the client (the echo
// session: flush, read, echo, bounded queue) and tell the backend what the
// client needs next — or forget and close it. An edge-triggered client whose
// read budget ran out (Next::again) is served again in the next round without
// waiting for a report, and the wait does not sleep meanwhile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/echo_session.hpp"

namespace iolab {

// What a wait reported for one descriptor. error and hangup: the kernel
// reports them whether asked for or not (EPOLLERR/POLLERR, EPOLLHUP/POLLHUP).
struct Ready {
    bool read = false;
    bool write = false;
    bool error = false;
    bool hangup = false;
};

template <class Backend>
class EchoDriver {
  public:
    EchoDriver(EchoLoop& loop, Backend& backend) : loop_(loop), backend_(backend) {}

    void run() {
        must_watch(loop_.stop.fd(), "stop signalfd");
        must_watch(loop_.acceptor.fd(), "listener " + loop_.acceptor.where());
        // Accepting pauses when descriptors run out and nothing can be shed:
        // the listener stays known but is not reported meanwhile.
        loop_.acceptor.on_watch(
            [this](bool on) { backend_.watch(loop_.acceptor.fd(), on, false); });
        while (!loop_.stop.requested()) {
            // Clients left with bytes unread (edge-triggered, read budget
            // spent) will get no report for them: do not sleep.
            const int timeout = again_.empty() ? loop_.acceptor.timeout_ms() : 0;
            backend_.wait(timeout, [this](int fd, Ready r) { return on_ready(fd, r); });
            loop_.acceptor.resume_due();
            serve_again();
        }
    }

  private:
    bool on_ready(int fd, Ready r) {
        if (fd == loop_.stop.fd()) {
            loop_.stop.check();  // read(2) the signalfd: a signal, or EAGAIN
            return false;
        }
        if (fd == loop_.acceptor.fd()) return accept_ready() > 0;
        // A descriptor closed earlier in this round (a backend may report it
        // from the answer it got before the close): nothing to do.
        if (!loop_.clients.is_open(fd)) return false;
        Client& c = loop_.clients[fd];
        const Next n = loop_.session.serve(c, r.read, r.write, r.error, r.hangup);
        if (n.close.empty()) {
            if (n.again && !c.again) {
                c.again = true;
                again_.push_back(fd);
            }
            std::string why = backend_.watch(fd, n.read, n.write);
            if (why.empty()) return n.moved;
            close(c, why);
        } else {
            close(c, n.close);
        }
        return true;
    }

    // The clients whose read budget ran out last round, as if reported
    // readable again (each once: Client::again).
    void serve_again() {
        std::swap(again_, serving_again_);
        for (int fd : serving_again_) {
            if (!loop_.clients.is_open(fd) || !loop_.clients[fd].again) continue;
            loop_.clients[fd].again = false;
            on_ready(fd, Ready{.read = true});
        }
        serving_again_.clear();
    }

    std::size_t accept_ready() {
        auto admit = [this](Fd& fd, const std::string& peer) {
            // A new client: watch it for reading ("tell me when it sends").
            std::string why = backend_.watch(fd.get(), true, false);
            if (why.empty()) loop_.clients.open(std::move(fd), peer);
            return why;  // not empty: refused, and the acceptor closes it
        };
        // Level-triggered: a batch; the listener is reported again while more
        // wait, and the clients already here get their turn in between.
        // Edge-triggered: everything, until EAGAIN — there is no second report.
        return loop_.acceptor.accept_batch(loop_.clients.size(),
                                           loop_.edge ? SIZE_MAX : kAcceptBatch, admit);
    }

    void close(Client& c, const std::string& why) {
        backend_.forget(c.fd.get());  // out of the interest set, then close(2)
        loop_.clients.close(c, why);
    }

    void must_watch(int fd, const std::string& what) {
        if (std::string why = backend_.watch(fd, true, false); !why.empty())
            throw std::runtime_error("cannot watch the " + what + ": " + why);
    }

    EchoLoop& loop_;
    Backend& backend_;
    std::vector<int> again_, serving_again_;  // descriptors to serve without a report
};

}  // namespace iolab
