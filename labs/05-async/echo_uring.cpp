// echo-uring — the completion model as the kernel does it: io_uring.
//
// Usage: echo-uring [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                   [--entries N]
//
// io_uring is two ring buffers shared between the process and the kernel.
// The program writes requests — submission queue entries (SQEs): "accept on
// this socket", "recv into this buffer", "send these bytes", "read this
// signalfd" — and one io_uring_enter(2) call hands the whole batch over. The
// kernel does the work (a socket recv waits on the socket's wait queue inside
// the kernel, no thread per request) and posts a completion queue entry (CQE)
// per request: the user_data we gave it and the result, which is what the
// system call would have returned (bytes, a new descriptor, or -errno).
//
// Each connection owns one 64 KiB buffer and has exactly one request in
// flight: a recv, then a send of what arrived (again for the rest after a short
// send), then a recv again. The buffer belongs to the kernel from submission
// to completion; a connection is freed only when it has nothing in flight.
//
//   SQ ring ─▶ accept · recv(A) · send(B) · read(signalfd) ─▶ kernel
//   CQ ring ◀─ {user_data, res} per finished request      ◀─ kernel
//
// SIGINT/SIGTERM: a read of StopSignals' signalfd is one more SQE; its
// completion is the stop. Then every request still in flight is cancelled (IORING_OP_ASYNC_CANCEL)
// and reaped before the buffers are freed.
//
// Linux notes: needs Linux >= 5.5 for accept (5.6 for the IORING_OP_SEND/RECV
// used here). If io_uring is unavailable (old kernel, seccomp, or sysctl
// kernel.io_uring_disabled=2), io_uring_queue_init fails and the program says
// so and exits 1.

#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

// "accept 127.0.0.1:9000: Too many open files", formatted with strerror_r:
// this runs when the process has no descriptor to spare, and errno_text()'s
// virtual call into std::error_category is one that UBSan checks by probing
// memory through a pipe — which it cannot create then.
std::string fdless_message(std::string_view call, std::string_view where, int err) {
    char text[128];
    const char* what = ::strerror_r(err, text, sizeof text);
    return std::string(call) + " " + std::string(where) + ": " + what;
}

constexpr std::size_t kBufSize = 64 * 1024;

// What a completion is about: user_data = (connection id << 8) | Op.
enum Op : uint64_t { kAccept = 1, kStop, kStopPoll, kRecv, kSend, kCancel, kTimer };
constexpr uint64_t tag(uint64_t id, Op op) {
    return (id << 8) | op;
}

struct Conn {
    uint64_t id = 0;
    Fd fd;
    std::string peer;
    std::unique_ptr<char[]> buf = std::make_unique<char[]>(kBufSize);
    std::size_t off = 0, len = 0;  // while sending: buf[off, len) is still owed
    bool in_flight = false;        // a recv or send SQE owns buf
};

// The ring, torn down with io_uring_queue_exit when it dies.
class Ring {
  public:
    explicit Ring(unsigned entries) {
        // io_uring_setup(2) under the hood: allocates the two rings and maps
        // them into our address space. liburing returns -errno.
        if (int r = io_uring_queue_init(entries, &ring_, 0); r < 0)
            throw_sys("io_uring_queue_init", std::to_string(entries) + " entries", -r);
    }
    ~Ring() { io_uring_queue_exit(&ring_); }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    io_uring* get() { return &ring_; }

    // A free SQE; if the submission ring is full, hand what is there to the
    // kernel first (io_uring_submit) to make room.
    io_uring_sqe* sqe() {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        if (s == nullptr) {
            if (int r = io_uring_submit(&ring_); r < 0) throw_sys("io_uring_submit", "", -r);
            s = io_uring_get_sqe(&ring_);
            if (s == nullptr) throw_sys("io_uring_get_sqe", "submission ring full", EBUSY);
        }
        return s;
    }

  private:
    io_uring ring_{};
};

class UringServer {
  public:
    UringServer(const ServerOptions& opts, unsigned entries)
        : opts_(opts), entries_(entries), log_(opts.verbose) {}

    int run() {
        StopSignals stop;  // blocks SIGINT/SIGTERM
        raise_nofile_limit();
        Ring ring(entries_);
        ring_ = &ring;

        listener_ = listen_tcp(opts_.host, opts_.port);
        where_ = local_address(listener_.get()).to_string();
        announce_listening(listener_.get());

        stop_fd_ = stop.fd();
        submit_stop_read();
        submit_accept();

        while (!stopping_)
            reap(/*wait=*/true);
        shutdown();
        conns_.clear();
        print_summary(stats_);
        return 0;
    }

  private:
    // One io_uring_enter: submit what is queued and wait for at least one
    // completion; then handle every CQE that is there.
    void reap(bool wait) {
        io_uring* r = ring_->get();
        int n = wait ? io_uring_submit_and_wait(r, 1) : io_uring_submit(r);
        if (n < 0 && n != -EINTR) throw_sys("io_uring_enter", where_, -n);
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0, seen = 0;
        io_uring_for_each_cqe(r, head, cqe) {
            ++seen;
            --in_flight_;
            handle(io_uring_cqe_get_data64(cqe), cqe->res);
        }
        io_uring_cq_advance(r, seen);  // hand the CQ slots back to the kernel
    }

    void handle(uint64_t data, int res) {
        const auto op = static_cast<Op>(data & 0xff);
        const uint64_t id = data >> 8;
        switch (op) {
            case kAccept:
                accept_pending_ = false;
                on_accept(res);
                return;
            case kStop:
                if (res == -EAGAIN) {
                    // The signalfd is O_NONBLOCK. This kernel (6.18) still
                    // waits for it by polling internally; one that answers
                    // -EAGAIN gets a poll SQE first, then the read again.
                    submit_stop_poll();
                    return;
                }
                if (res < 0) log_.error(sys_message("read", "signalfd", -res));
                stopping_ = true;  // res == sizeof(signalfd_siginfo): SIGINT or SIGTERM
                return;
            case kStopPoll:
                if (res < 0) {
                    log_.error(sys_message("poll", "signalfd", -res));
                    stopping_ = true;
                    return;
                }
                submit_stop_read();
                return;
            case kTimer:
                timer_pending_ = false;
                if (!stopping_) submit_accept();
                return;
            case kCancel:
                return;  // the cancelled request posts its own CQE (-ECANCELED)
            case kRecv:
            case kSend:
                break;
        }
        auto it = conns_.find(id);
        if (it == conns_.end()) return;
        Conn& c = *it->second;
        c.in_flight = false;
        if (res < 0) {
            if (res != -ECANCELED)
                log_.info(sys_message(op == kRecv ? "recv" : "send", c.peer, -res));
            return close(it);
        }
        if (op == kRecv) {
            if (res == 0) return close(it);  // FIN: everything was echoed already
            stats_.add_in(static_cast<uint64_t>(res));
            c.off = 0;
            c.len = static_cast<std::size_t>(res);
        } else {
            if (res == 0) return close(it);
            stats_.add_out(static_cast<uint64_t>(res));
            c.off += static_cast<std::size_t>(res);  // a short send: the rest next
        }
        if (stopping_) return;  // counted; nothing new is submitted
        if (c.off < c.len)
            submit_send(c);
        else
            submit_recv(c);
    }

    void on_accept(int res) {
        if (res >= 0) {
            auto c = std::make_unique<Conn>();
            c->fd.reset(res);
            try {
                c->peer = peer_address(res).to_string();
            } catch (const SysError& e) {  // reset before we looked
                log_.info(e.what());
                c.reset();
            }
            if (c && conns_.size() >= opts_.max_clients) {
                stats_.refused.fetch_add(1);
                log_.info("refuse " + c->peer + ": server full");
                c.reset();  // closed at once
            }
            if (c) {
                c->id = ++last_id_;
                stats_.connections.fetch_add(1);
                log_.info("connect " + c->peer);
                Conn& ref = *c;
                conns_.emplace(ref.id, std::move(c));
                submit_recv(ref);
            }
        } else if (is_resource_exhaustion(-res)) {
            // Out of descriptors: the connection stays in the backlog. Asking
            // again at once would spin; a timeout SQE re-arms accept in 100 ms.
            auto now = std::chrono::steady_clock::now();
            if (now - last_accept_log_ >= std::chrono::seconds(1)) {  // one line a second
                log_.error(fdless_message("accept", where_, -res));
                last_accept_log_ = now;
            }
            if (!stopping_) submit_timer();
            return;
        } else if (res != -ECANCELED) {
            log_.info(sys_message("accept", where_, -res));  // ECONNABORTED and the like
        }
        if (!stopping_) submit_accept();
    }

    void submit_accept() {
        io_uring_sqe* s = ring_->sqe();
        // The kernel accepts on our behalf; res is the new descriptor. (Since
        // 5.19 IORING_ACCEPT_MULTISHOT keeps one SQE armed for every
        // connection; one-shot is re-armed here after each completion.)
        io_uring_prep_accept(s, listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(s, tag(0, kAccept));
        ++in_flight_;
        accept_pending_ = true;
    }

    // The stop signal as one more request: a read of StopSignals' signalfd
    // completes when SIGINT or SIGTERM is pending.
    void submit_stop_read() {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_read(s, stop_fd_, &siginfo_, sizeof siginfo_, 0);
        io_uring_sqe_set_data64(s, tag(0, kStop));
        ++in_flight_;
    }

    void submit_stop_poll() {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_poll_add(s, stop_fd_, POLLIN);
        io_uring_sqe_set_data64(s, tag(0, kStopPoll));
        ++in_flight_;
    }

    void submit_timer() {
        timeout_ = {0, 100'000'000};
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_timeout(s, &timeout_, 0, 0);
        io_uring_sqe_set_data64(s, tag(0, kTimer));
        ++in_flight_;
        timer_pending_ = true;
    }

    void submit_recv(Conn& c) {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_recv(s, c.fd.get(), c.buf.get(), kBufSize, 0);
        io_uring_sqe_set_data64(s, tag(c.id, kRecv));
        ++in_flight_;
        c.in_flight = true;
    }

    void submit_send(Conn& c) {
        io_uring_sqe* s = ring_->sqe();
        // MSG_NOSIGNAL: a reset peer gives -EPIPE in the CQE, not SIGPIPE.
        io_uring_prep_send(s, c.fd.get(), c.buf.get() + c.off, c.len - c.off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, tag(c.id, kSend));
        ++in_flight_;
        c.in_flight = true;
    }

    void submit_cancel(uint64_t target) {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_cancel64(s, target, 0);
        io_uring_sqe_set_data64(s, tag(0, kCancel));
        ++in_flight_;
    }

    using Iter = std::unordered_map<uint64_t, std::unique_ptr<Conn>>::iterator;
    void close(Iter it) {
        log_.info("disconnect " + it->second->peer);
        conns_.erase(it);  // close(2): nothing of it is in flight
    }

    // Stop: cancel what is still in flight and reap until nothing is, so no
    // buffer is freed while the kernel may still write into it.
    void shutdown() {
        if (accept_pending_) submit_cancel(tag(0, kAccept));
        if (timer_pending_) submit_cancel(tag(0, kTimer));
        for (auto& [id, c] : conns_) {
            if (!c->in_flight) continue;
            // Only one of the two can match: the connection's single request.
            submit_cancel(tag(id, kRecv));
            submit_cancel(tag(id, kSend));
        }
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (in_flight_ > 0) {
            io_uring* r = ring_->get();
            io_uring_submit(r);
            __kernel_timespec ts{0, 200'000'000};
            io_uring_cqe* cqe = nullptr;
            int w = io_uring_wait_cqe_timeout(r, &cqe, &ts);
            if (w == 0 || w == -ETIME || w == -EINTR)
                reap(/*wait=*/false);
            else
                throw_sys("io_uring_wait_cqe_timeout", where_, -w);
            if (in_flight_ > 0 && std::chrono::steady_clock::now() > deadline) {
                log_.error("io_uring: " + std::to_string(in_flight_) +
                           " request(s) not completed at exit");
                for (auto& [id, c] : conns_)
                    if (c->in_flight) (void)c.release();  // the kernel may still own it
                return;
            }
        }
    }

    const ServerOptions& opts_;
    unsigned entries_;
    Log log_;
    Ring* ring_ = nullptr;
    Fd listener_;
    std::string where_;
    ServerStats stats_;
    __kernel_timespec timeout_{};
    int stop_fd_ = -1;
    signalfd_siginfo siginfo_{};  // the stop read's buffer, owned by the kernel until then
    std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
    uint64_t last_id_ = 0;
    long in_flight_ = 0;  // SQEs submitted whose CQE has not been seen
    bool stopping_ = false;
    bool accept_pending_ = false;
    bool timer_pending_ = false;
    std::chrono::steady_clock::time_point last_accept_log_{};
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    unsigned entries = 256;
    CLI::App app{"io_uring echo server: accept, recv, send and the stop signal as SQEs"};
    iolab::add_server_options(app, "echo-uring", opts);
    app.add_option("--entries", entries,
                   "Submission ring size (io_uring_queue_init; the kernel allows at most 32768)")
        ->check(CLI::Range(1u, 1u << 20))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-uring", [&] {
        UringServer server(opts, entries);
        return server.run();
    });
}
