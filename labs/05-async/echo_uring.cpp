// echo-uring — the completion model as the kernel does it: io_uring.
//
// Usage: echo-uring [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                   [--step 1..5 | --simple] [--entries N] [--buffers N]
//
// io_uring is two ring buffers shared between the process and the kernel.
// The program writes requests — submission queue entries (SQEs): "accept on
// this socket", "recv", "send these bytes", "read this signalfd" — and
// io_uring_enter(2) hands them over. The kernel does the work (a socket recv
// waits on the socket's wait queue inside the kernel, no thread per request)
// and posts a completion queue entry (CQE) per result: the user_data we gave
// it and what the system call would have returned (bytes, a descriptor, -errno).
//
//   SQ ring ─▶ accept · recv(A) · send(B) · read(signalfd) ─▶ kernel
//   CQ ring ◀─ {user_data, res, flags} per result          ◀─ kernel
//
// The lab builds the server up in five steps (--step N; --simple = --step 1):
//   1 simple         one request per completion: accept, then for each client
//                    recv into its own 64 KiB buffer, send it back, recv
//                    again; every SQE is handed over by its own io_uring_enter.
//   2 + multishot accept   one accept SQE stays armed and completes once per
//                    connection (CQE flag IORING_CQE_F_MORE: "more to come").
//   3 + buffer ring  one multishot recv per client, armed once; the kernel
//                    picks a buffer from a ring of --buffers 4 KiB buffers
//                    shared by every client only when data arrives. The bytes
//                    are copied into the client's output queue and the buffer
//                    goes straight back to the ring: an idle client owns no
//                    buffer at all.
//   4 + batched submit  SQEs made while handling completions wait in the SQ
//                    ring; one io_uring_enter per loop round submits them all
//                    and waits for the next completions.
//   5 + setup flags  SINGLE_ISSUER (only this thread submits) and
//                    DEFER_TASKRUN (the kernel runs completion work when we
//                    enter to wait, not by interrupting us), or COOP_TASKRUN
//                    where DEFER_TASKRUN is refused; detected at start (-v says).
//
// Backpressure. Steps 1–2 have one request in flight per client: a client
// that does not read its echo holds one buffer and nothing more is read. From
// step 3 a multishot recv keeps reading on its own, so "stop reading" means
// cancelling it (IORING_OP_ASYNC_CANCEL) once the client owes 64 KiB of echo;
// what the kernel had already completed is still queued (the queue may pass
// 64 KiB by those few buffers), then the socket's receive buffer fills and
// TCP closes the sender's window. The recv is armed again below 32 KiB.
//
// Out of descriptors (EMFILE): the accept completes with -EMFILE (a multishot
// accept ends there); the connection stays in the backlog and a timeout SQE
// arms accept again 100 ms later, so the loop does not spin.
//
// SIGINT/SIGTERM: a read of StopSignals' signalfd is one more SQE; its
// completion is the stop. Every request still armed is cancelled and reaped
// before any buffer is freed.
//
// Linux notes: accept/send/recv need 5.6, multishot accept 5.19, the buffer
// ring and multishot recv 6.0, DEFER_TASKRUN 6.1. If io_uring is unavailable
// (seccomp, sysctl kernel.io_uring_disabled=2), io_uring_queue_init fails and
// the program says so and exits 1.

#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "common/acceptor.hpp"
#include "common/address.hpp"
#include "common/error.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

constexpr std::size_t kClientBufSize = 64 * 1024;  // steps 1–2: one per client
constexpr std::size_t kRingBufSize = 4096;         // steps 3–5: one per ring slot
constexpr uint16_t kBufGroup = 0;                  // the buffer ring's group id
constexpr std::size_t kMaxOwed = 64 * 1024;        // echo owed to one client: stop reading
constexpr std::size_t kResumeOwed = kMaxOwed / 2;  // ...and read again below this

// What the program does at each --step.
struct Features {
    int step = 5;
    bool multishot_accept = false;
    bool buffer_ring = false;  // multishot recv with a provided buffer ring
    bool batch = false;
    bool setup_flags = false;
    static Features at(int step) { return {step, step >= 2, step >= 3, step >= 4, step >= 5}; }
};

// What a completion is about: user_data = (client id << 8) | Op.
enum Op : uint64_t { kAccept = 1, kStop, kStopPoll, kRecv, kSend, kCancel, kTimer };
constexpr uint64_t tag(uint64_t id, Op op) {
    return (id << 8) | op;
}

struct Client {
    uint64_t id = 0;
    Fd fd;
    std::string peer;
    // Steps 1–2: the client's own buffer; recv fills it, send empties
    // buf[off, len). The kernel owns it while a request is in flight.
    std::unique_ptr<char[]> buf;
    std::size_t off = 0, len = 0;
    // Steps 3–5: the echo owed. A send SQE owns sending[sent, end); bytes
    // that arrive meanwhile wait in `pending` (appending to `sending` could
    // move the memory the kernel is reading).
    std::string sending, pending;
    std::size_t sent = 0;
    bool recv_armed = false;  // a recv (one-shot or multishot) is in the kernel
    bool recv_cancelled = false;
    bool send_in_flight = false;
    bool eof = false;     // the peer sent FIN: close once the echo is out
    std::string closing;  // non-empty: the reason; freed once nothing is in flight
    [[nodiscard]] std::size_t owed() const { return sending.size() - sent + pending.size(); }
    [[nodiscard]] bool busy() const { return recv_armed || send_in_flight; }
};

// The ring, torn down with io_uring_queue_exit when it dies.
class Ring {
  public:
    Ring(unsigned entries, bool want_flags, bool batch) : batch_(batch) {
        // Newest first; the kernel answers EINVAL for a flag it does not know.
        struct Try {
            unsigned flags;
            const char* names;
        };
        const Try tries[] = {
            {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
             "SINGLE_ISSUER DEFER_TASKRUN"},  // 6.1
            {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
             "SINGLE_ISSUER COOP_TASKRUN"},               // 6.0
            {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},  // 5.19
            {0, "none"},
        };
        int r = -EINVAL;
        for (const Try& t : tries) {
            if (!want_flags && t.flags != 0) continue;
            // io_uring_setup(2) under the hood: allocates the two rings and
            // maps them into our address space. A completion ring 8 times the
            // submission ring absorbs bursts of multishot completions.
            io_uring_params p{};
            p.flags = t.flags | IORING_SETUP_CQSIZE;
            p.cq_entries = std::min(entries * 8, 65536u);  // the kernel's largest CQ ring
            r = io_uring_queue_init_params(entries, &ring_, &p);
            if (r == 0) {
                flags_ = t.names;
                return;
            }
            if (r != -EINVAL) break;
            if (t.flags != 0) refused_ += std::string(refused_.empty() ? "" : ", ") + t.names;
        }
        throw_sys("io_uring_queue_init", std::to_string(entries) + " entries", -r);
    }
    ~Ring() { io_uring_queue_exit(&ring_); }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    io_uring* get() { return &ring_; }
    [[nodiscard]] const std::string& flags() const { return flags_; }
    [[nodiscard]] const std::string& refused() const { return refused_; }

    // A free SQE; if the submission ring is full, hand what is there to the
    // kernel first (io_uring_submit) to make room.
    io_uring_sqe* sqe() {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        if (s == nullptr) {
            submit();
            s = io_uring_get_sqe(&ring_);
            if (s == nullptr) throw_sys("io_uring_get_sqe", "submission ring full", EBUSY);
        }
        return s;
    }
    // Called after each SQE is filled in. Unbatched (steps 1–3), every SQE
    // costs one io_uring_enter; batched, it waits for the loop's next enter.
    void queued() {
        if (!batch_) submit();
    }
    void submit() {
        if (int r = io_uring_submit(&ring_); r < 0 && r != -EINTR)
            throw_sys("io_uring_submit", "", -r);
    }

  private:
    io_uring ring_{};
    bool batch_;
    std::string flags_;
    std::string refused_;  // flag sets the kernel answered EINVAL
};

// A provided-buffer ring (steps 3–5): `count` buffers of kRingBufSize that
// the kernel picks from when a multishot recv has data, reporting the buffer
// id in the CQE flags. liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring,
// so the ring's memory is mapped here and registered by hand.
class BufferRing {
  public:
    BufferRing(io_uring* ring, unsigned count) : ring_(ring), count_(count) {
        bytes_ = count * sizeof(io_uring_buf);
        void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1,
                         0);  // page-aligned, as the kernel requires
        if (p == MAP_FAILED) throw_sys("mmap", "buffer ring");
        br_ = static_cast<io_uring_buf_ring*>(p);
        io_uring_buf_ring_init(br_);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<uint64_t>(br_);
        reg.ring_entries = count;
        reg.bgid = kBufGroup;
        if (int r = io_uring_register_buf_ring(ring_, &reg, 0); r < 0) {
            ::munmap(br_, bytes_);
            throw_sys("io_uring_register_buf_ring", std::to_string(count) + " buffers", -r);
        }
        data_.reset(new char[count * kRingBufSize]);  // not zeroed: pages come when used
        for (unsigned i = 0; i < count; ++i)
            give_back(static_cast<uint16_t>(i));
    }
    ~BufferRing() {
        io_uring_unregister_buf_ring(ring_, kBufGroup);
        ::munmap(br_, bytes_);
    }
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;

    [[nodiscard]] const char* data(uint16_t bid) const { return data_.get() + bid * kRingBufSize; }
    // Puts buffer `bid` back at the ring's tail; the kernel may pick it again.
    void give_back(uint16_t bid) {
        io_uring_buf_ring_add(br_, data_.get() + bid * kRingBufSize, kRingBufSize, bid,
                              io_uring_buf_ring_mask(count_), 0);
        io_uring_buf_ring_advance(br_, 1);
    }

  private:
    io_uring* ring_;
    unsigned count_;
    std::size_t bytes_ = 0;
    io_uring_buf_ring* br_ = nullptr;
    std::unique_ptr<char[]> data_;
};

class UringServer {
  public:
    UringServer(StopSignals& stop, const ServerOptions& opts, Features f, unsigned entries,
                unsigned buffers)
        : stop_(stop),
          opts_(opts),
          f_(f),
          entries_(entries),
          buffers_(buffers),
          log_(opts.verbose) {}

    int run() {
        raise_nofile_limit();
        Ring ring(entries_, f_.setup_flags, f_.batch);
        ring_ = &ring;
        std::unique_ptr<BufferRing> bufs;  // destroyed before the ring
        if (f_.buffer_ring) bufs = std::make_unique<BufferRing>(ring.get(), buffers_);
        bufs_ = bufs.get();
        describe();

        listener_ = listen_tcp(opts_.host, opts_.port);
        where_ = local_address(listener_.get()).to_string();
        announce_listening(listener_.get());

        submit_stop_read();
        submit_accept();
        // The loop: one io_uring_enter submits what is queued and waits for
        // at least one completion; then every CQE that is there is handled.
        while (!stopping_)
            reap(/*wait=*/true);
        shutdown();
        clients_.clear();
        print_summary(stats_);
        return 0;
    }

  private:
    void describe() const {
        std::string what = "io_uring: step " + std::to_string(f_.step) + ": ";
        what += f_.multishot_accept ? "multishot accept" : "one-shot accept";
        what += f_.buffer_ring ? ", multishot recv, buffer ring " + std::to_string(buffers_) +
                                     " x " + std::to_string(kRingBufSize) + " B"
                               : ", one-shot recv, 64 KiB buffer per client";
        what += f_.batch ? ", batched submit" : ", one io_uring_enter per SQE";
        what += ", setup flags: " + ring_->flags();
        if (!f_.setup_flags)
            what += " (not asked at this step)";
        else if (!ring_->refused().empty())
            what += " (refused by this kernel: " + ring_->refused() + ")";
        log_.info(what);
    }

    void reap(bool wait) {
        // [lab:reap]
        io_uring* r = ring_->get();
        int n = wait ? io_uring_submit_and_wait(r, 1) : io_uring_submit(r);
        if (n < 0 && n != -EINTR) throw_sys("io_uring_enter", where_, -n);
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0, seen = 0;
        io_uring_for_each_cqe(r, head, cqe) {
            ++seen;
            // A multishot request stays in the kernel while F_MORE is set.
            if ((cqe->flags & IORING_CQE_F_MORE) == 0) --in_flight_;
            handle(io_uring_cqe_get_data64(cqe), cqe->res, cqe->flags);
        }
        io_uring_cq_advance(r, seen);  // hand the CQ slots back to the kernel
        // [/lab:reap]
    }

    void handle(uint64_t data, int res, unsigned flags) {
        const auto op = static_cast<Op>(data & 0xff);
        const uint64_t id = data >> 8;
        switch (op) {
            case kAccept:
                if ((flags & IORING_CQE_F_MORE) == 0) accept_armed_ = false;
                on_accept(res);
                return;
            case kStop:
                if (res == -EAGAIN) {
                    // The signalfd is O_NONBLOCK. This kernel (6.18) waits
                    // for it by polling internally; one that answers -EAGAIN
                    // gets a poll SQE first, then the read again.
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
                timer_armed_ = false;
                if (!stopping_) submit_accept();
                return;
            case kCancel:
                // The cancelled request posts its own CQE (-ECANCELED).
                if (id != 0) on_recv_cancel_done(id, res);
                return;
            case kRecv:
            case kSend:
                break;
        }
        auto it = clients_.find(id);
        if (it == clients_.end()) {
            // Cannot happen (a client is freed only when nothing is in
            // flight), but a buffer must never leak out of the ring.
            if (flags & IORING_CQE_F_BUFFER) bufs_->give_back(buffer_id(flags));
            return;
        }
        Client& c = *it->second;
        if (op == kRecv && f_.buffer_ring)
            on_recv_multishot(c, res, flags);
        else if (op == kRecv)
            on_recv_simple(c, res);
        else
            on_send(c, res);
        if (!c.closing.empty() && !c.busy()) close(it);
    }

    static uint16_t buffer_id(unsigned flags) {
        return static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    }

    // ---- accept -------------------------------------------------------------

    void on_accept(int res) {
        if (res >= 0) {
            admit(res);
        } else if (is_resource_exhaustion(-res)) {
            // Out of descriptors: the connection stays in the backlog. Asking
            // again at once would spin; a timeout SQE re-arms accept in 100 ms.
            auto now = std::chrono::steady_clock::now();
            if (now - last_accept_log_ >= std::chrono::seconds(1)) {  // one line a second
                log_.error(sys_message_fdless("accept", where_, -res));
                last_accept_log_ = now;
            }
            if (!stopping_ && !accept_armed_ && !timer_armed_) submit_timer();
            return;
        } else if (res != -ECANCELED) {
            log_.info(sys_message("accept", where_, -res));  // ECONNABORTED and the like
        }
        if (!stopping_ && !accept_armed_ && !timer_armed_) submit_accept();
    }

    // Every accepted connection counts: in connections=, or in refused=.
    void admit(int raw_fd) {
        auto c = std::make_unique<Client>();
        c->fd.reset(raw_fd);
        c->peer = accepted_peer(raw_fd, log_);
        if (!admit_or_refuse(c->peer, clients_.size(), opts_.max_clients, stats_, log_))
            return;  // c closes the descriptor
        c->id = ++last_id_;
        if (!f_.buffer_ring) c->buf = std::make_unique<char[]>(kClientBufSize);
        Client& ref = *c;
        clients_.emplace(ref.id, std::move(c));
        arm_recv(ref);
    }

    void submit_accept() {
        io_uring_sqe* s = ring_->sqe();
        // The kernel accepts on our behalf; res is the new descriptor. A
        // multishot accept stays armed: one CQE per connection, F_MORE set.
        if (f_.multishot_accept)
            io_uring_prep_multishot_accept(s, listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        else
            io_uring_prep_accept(s, listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(s, tag(0, kAccept));
        queued();
        accept_armed_ = true;
    }

    // ---- recv and send --------------------------------------------------------

    void arm_recv(Client& c) {
        // [lab:recv]
        io_uring_sqe* s = ring_->sqe();
        if (f_.buffer_ring) {
            // No buffer given: IOSQE_BUFFER_SELECT lets the kernel take one
            // from group kBufGroup each time data arrives.
            io_uring_prep_recv_multishot(s, c.fd.get(), nullptr, 0, 0);
            s->flags |= IOSQE_BUFFER_SELECT;
            s->buf_group = kBufGroup;
        } else {
            io_uring_prep_recv(s, c.fd.get(), c.buf.get(), kClientBufSize, 0);
        }
        io_uring_sqe_set_data64(s, tag(c.id, kRecv));
        queued();
        c.recv_armed = true;
        // [/lab:recv]
        c.recv_cancelled = false;
    }

    // Steps 1–2: recv completed into c.buf; send it all back, then recv again.
    void on_recv_simple(Client& c, int res) {
        c.recv_armed = false;
        if (res <= 0) return end_by_recv(c, res);
        stats_.add_in(static_cast<uint64_t>(res));
        c.off = 0;
        c.len = static_cast<std::size_t>(res);
        if (!stopping_) submit_send(c, c.buf.get(), c.len);
    }

    // Steps 3–5: one CQE per chunk the multishot recv delivered.
    void on_recv_multishot(Client& c, int res, unsigned flags) {
        if ((flags & IORING_CQE_F_MORE) == 0) c.recv_armed = false;  // it ended
        if (res > 0) {
            const uint16_t bid = buffer_id(flags);
            stats_.add_in(static_cast<uint64_t>(res));
            if (c.closing.empty())
                c.pending.append(bufs_->data(bid), static_cast<std::size_t>(res));
            bufs_->give_back(bid);  // copied: the buffer serves any client again
            start_send(c);
            if (c.owed() >= kMaxOwed) stop_reading(c);
        } else if (res == -ENOBUFS) {
            // The ring was empty when data came: the multishot recv ends and
            // is armed again below (the buffers are back by now).
        } else if (res == 0 || res != -ECANCELED) {
            return end_by_recv(c, res);
        }
        maybe_resume(c);
    }

    // Backpressure: cancel the armed multishot recv. CQEs it posted before
    // the cancel took effect still arrive (and are queued); after that the
    // kernel's receive buffer fills and TCP stops the sender.
    void stop_reading(Client& c) {
        if (!c.recv_armed || c.recv_cancelled) return;
        submit_cancel(tag(c.id, kRecv), c.id);
        c.recv_cancelled = true;
    }

    // A cancel that found nothing (-ENOENT: the recv ended meanwhile, its last
    // CQE is on the way) needs nothing more. One that failed otherwise
    // (-EALREADY) left the recv armed: try again, at once when stopping or
    // closing, else on the client's next recv completion. Without this, one
    // failed cancel would leave a non-reading client's echo growing unbounded.
    void on_recv_cancel_done(uint64_t id, int res) {
        auto it = clients_.find(id);
        if (res >= 0 || res == -ENOENT || it == clients_.end()) return;
        Client& c = *it->second;
        if (!c.recv_armed) return;
        log_.info(sys_message("cancel recv", c.peer, -res) + "; trying again");
        c.recv_cancelled = false;
        if (stopping_ || !c.closing.empty()) stop_reading(c);
    }

    void maybe_resume(Client& c) {
        if (!f_.buffer_ring || c.recv_armed || c.eof || !c.closing.empty() || stopping_) return;
        if (c.owed() <= kResumeOwed) arm_recv(c);
    }

    // res == 0: FIN; res < 0: an error. Either way nothing more is read.
    void end_by_recv(Client& c, int res) {
        if (res == 0) {
            c.eof = true;
            if (c.owed() == 0 && !c.send_in_flight) finish(c, "eof");
            return;  // otherwise closed once the echo is out (on_send)
        }
        if (res == -ECANCELED) return finish(c, "stop");
        finish(c, res == -ECONNRESET ? "reset" : "recv: " + errno_text(-res));
    }

    void start_send(Client& c) {
        if (c.send_in_flight || stopping_ || !c.closing.empty()) return;
        if (c.sent == c.sending.size()) {
            c.sending.clear();
            c.sent = 0;
            std::swap(c.sending, c.pending);
        }
        if (c.sending.empty()) return;
        submit_send(c, c.sending.data() + c.sent, c.sending.size() - c.sent);
    }

    void submit_send(Client& c, const char* data, std::size_t n) {
        io_uring_sqe* s = ring_->sqe();
        // MSG_NOSIGNAL: a reset peer gives -EPIPE in the CQE, not SIGPIPE.
        io_uring_prep_send(s, c.fd.get(), data, n, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, tag(c.id, kSend));
        queued();
        c.send_in_flight = true;
    }

    void on_send(Client& c, int res) {
        c.send_in_flight = false;
        if (res < 0) {
            if (res == -ECANCELED) return finish(c, "stop");
            return finish(
                c, res == -ECONNRESET || res == -EPIPE ? "reset" : "send: " + errno_text(-res));
        }
        stats_.add_out(static_cast<uint64_t>(res));
        if (!f_.buffer_ring) {
            c.off += static_cast<std::size_t>(res);
            if (stopping_) return;
            if (c.off < c.len)
                submit_send(c, c.buf.get() + c.off, c.len - c.off);  // a short send: the rest
            else
                arm_recv(c);
            return;
        }
        c.sent += static_cast<std::size_t>(res);
        start_send(c);
        if (c.owed() == 0) {
            if (c.eof) return finish(c, "eof");
            // Idle again: give back what a burst made the strings grow to.
            if (c.sending.capacity() > kRingBufSize) std::string().swap(c.sending);
            if (c.pending.capacity() > kRingBufSize) std::string().swap(c.pending);
        }
        maybe_resume(c);
    }

    // Marks the client for closing; it is freed once the kernel holds no
    // request of it (a send in flight reads its memory).
    void finish(Client& c, const std::string& reason) {
        if (c.closing.empty()) c.closing = reason;
        stop_reading(c);
    }

    using Iter = std::unordered_map<uint64_t, std::unique_ptr<Client>>::iterator;
    void close(Iter it) {
        log_.info("disconnect " + it->second->peer + " (" + it->second->closing + ")");
        clients_.erase(it);  // close(2)
    }

    // ---- the rest: stop signal, timer, cancel -----------------------------------

    // The stop signal as one more request: a read of StopSignals' signalfd
    // completes when SIGINT or SIGTERM is pending.
    void submit_stop_read() {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_read(s, stop_.fd(), &siginfo_, sizeof siginfo_, 0);
        io_uring_sqe_set_data64(s, tag(0, kStop));
        queued();
    }

    void submit_stop_poll() {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_poll_add(s, stop_.fd(), POLLIN);
        io_uring_sqe_set_data64(s, tag(0, kStopPoll));
        queued();
    }

    void submit_timer() {
        timeout_ = {0, 100'000'000};
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_timeout(s, &timeout_, 0, 0);
        io_uring_sqe_set_data64(s, tag(0, kTimer));
        queued();
        timer_armed_ = true;
    }

    // `owner`: the client whose recv is cancelled (its answer is looked at),
    // else 0.
    void submit_cancel(uint64_t target, uint64_t owner = 0) {
        io_uring_sqe* s = ring_->sqe();
        io_uring_prep_cancel64(s, target, 0);
        io_uring_sqe_set_data64(s, tag(owner, kCancel));
        queued();
    }

    // Every SQE produces one last CQE (without F_MORE); count them to know
    // when the kernel holds nothing of ours.
    void queued() {
        ++in_flight_;
        ring_->queued();
    }

    // Stop: cancel what is still armed and reap until nothing is, so no
    // buffer is freed while the kernel may still write into it.
    void shutdown() {
        if (accept_armed_) submit_cancel(tag(0, kAccept));
        if (timer_armed_) submit_cancel(tag(0, kTimer));
        for (auto& [id, c] : clients_) {
            if (c->recv_armed && !c->recv_cancelled) submit_cancel(tag(id, kRecv), id);
            c->recv_cancelled = true;
            if (c->send_in_flight) submit_cancel(tag(id, kSend));
        }
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (in_flight_ > 0) {
            io_uring* r = ring_->get();
            ring_->submit();
            __kernel_timespec ts{0, 200'000'000};
            io_uring_cqe* cqe = nullptr;
            // Waiting (GETEVENTS) is also what runs deferred completion work.
            int w = io_uring_wait_cqe_timeout(r, &cqe, &ts);
            if (w == 0 || w == -ETIME || w == -EINTR)
                reap(/*wait=*/false);
            else
                throw_sys("io_uring_wait_cqe_timeout", where_, -w);
            if (in_flight_ > 0 && std::chrono::steady_clock::now() > deadline) {
                log_.error("io_uring: " + std::to_string(in_flight_) +
                           " request(s) not completed at exit");
                for (auto& [id, c] : clients_)
                    if (c->busy()) (void)c.release();  // the kernel may still own it
                return;
            }
        }
    }

    StopSignals& stop_;
    const ServerOptions& opts_;
    Features f_;
    unsigned entries_;
    unsigned buffers_;
    Log log_;
    Ring* ring_ = nullptr;
    BufferRing* bufs_ = nullptr;
    Fd listener_;
    std::string where_;
    ServerStats stats_;
    __kernel_timespec timeout_{};
    signalfd_siginfo siginfo_{};  // the stop read's buffer, owned by the kernel until then
    std::unordered_map<uint64_t, std::unique_ptr<Client>> clients_;
    uint64_t last_id_ = 0;
    long in_flight_ = 0;  // SQEs submitted whose last CQE has not been seen
    bool stopping_ = false;
    bool accept_armed_ = false;
    bool timer_armed_ = false;
    std::chrono::steady_clock::time_point last_accept_log_{};
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    unsigned entries = 256;
    unsigned buffers = 256;
    int step = 5;
    bool simple = false;
    CLI::App app{
        "io_uring echo server: accept, recv, send and the stop signal as SQEs; --step 1..5 "
        "builds it up from one request per completion to multishot requests over a shared "
        "buffer ring"};
    iolab::add_server_options(app, "echo-uring", opts,
                              "Log every connect and disconnect, and (at start) the io_uring "
                              "features and setup flags in use, to stderr");
    auto* step_opt =
        app.add_option("--step", step,
                       "1 simple (one-shot requests, one io_uring_enter each), 2 + multishot "
                       "accept, 3 + multishot recv over a shared buffer ring, 4 + batched "
                       "submit, 5 + setup flags (SINGLE_ISSUER, DEFER_TASKRUN or COOP_TASKRUN)")
            ->check(CLI::Range(1, 5))
            ->capture_default_str();
    app.add_flag("--simple", simple, "Same as --step 1: the lab's first version")
        ->excludes(step_opt);
    app.add_option("--entries", entries,
                   "Submission ring size (io_uring_queue_init; the kernel allows at most 32768)")
        ->check(CLI::Range(1u, 1u << 20))
        ->capture_default_str();
    auto* buffers_opt =
        app.add_option("--buffers", buffers,
                       "Buffers of 4 KiB in the shared buffer ring, a power of two (steps 3-5)")
            ->check(CLI::Range(1u, 32768u))
            ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    if (simple) step = 1;
    if ((buffers & (buffers - 1)) != 0)
        return iolab::usage_error(app, "--buffers must be a power of two");
    if (buffers_opt->count() > 0 && step < 3)
        return iolab::usage_error(app, "--buffers needs --step 3 or later (the buffer ring)");
    return iolab::guarded_main("echo-uring", [&] {
        iolab::StopSignals stop;  // blocks SIGINT/SIGTERM; first, before anything else
        UringServer server(stop, opts, Features::at(step), entries, buffers);
        return server.run();
    });
}
