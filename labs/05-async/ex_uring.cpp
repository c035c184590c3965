// ex-uring — write it yourself: the submission and completion step of an
// io_uring echo server (echo-uring --step 1, written by you).
//
// Usage: ex-uring [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//
// Everything around the core is here: the ring, the accept request, the stop
// signal as a read of a signalfd, the bookkeeping that frees a client only
// when the kernel holds no request of it, the cancel-and-reap at exit. Five
// pieces are yours (each a TODO(you) below; LAB.md § "echo-uring: the
// kernel's completion queue" and § "The code", the recv SQE and the reap):
//   submit_recv  an SQE: recv into the client's 64 KiB buffer
//   submit_send  an SQE: send back buf[off, len)
//   reap         hand the SQEs to the kernel, wait for completions, take each
//                CQE (its user_data and res) and mark it seen
//   on_recv      res > 0 bytes arrived, 0 the peer's FIN, < 0 an -errno
//   on_send      res bytes went out — maybe fewer than asked: send the rest
// Until they are written, the server accepts connections and never answers.
//
// Check: scripts/lab.sh's lab_ctest ex-uring runs the echo integration tests
// (byte-exact under concurrency, resets, the SIGTERM summary) on this binary.
//
// Linux notes: recv/send/accept SQEs need Linux 5.6 and liburing.

#include <liburing.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/acceptor.hpp"
#include "common/address.hpp"
#include "common/error.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

constexpr unsigned kEntries = 256;                 // submission ring size
constexpr std::size_t kClientBufSize = 64 * 1024;  // one buffer per client

// What a completion is about: user_data = (client id << 8) | Op. A client id
// is never reused, so a late completion can never reach the wrong client.
enum Op : uint64_t { kAccept = 1, kStop, kStopPoll, kTimer, kCancel, kRecv, kSend };
constexpr uint64_t tag(uint64_t id, Op op) {
    return (id << 8) | op;
}

// One client, one request in flight at a time: a recv into buf, then sends
// of buf[off, len) until all of it is out, then the next recv. While a
// request is in flight the kernel owns buf.
struct Client {
    uint64_t id = 0;
    Fd fd;
    std::string peer;
    std::unique_ptr<char[]> buf = std::make_unique<char[]>(kClientBufSize);
    std::size_t off = 0, len = 0;
    bool in_flight = false;  // a recv or a send of this client is in the kernel
    std::string closing;     // non-empty: why; freed once nothing is in flight
};

class UringServer {
  public:
    UringServer(StopSignals& stop, const ServerOptions& opts)
        : stop_(stop), opts_(opts), log_(opts.verbose) {}
    ~UringServer() {
        if (ring_ok_) io_uring_queue_exit(&ring_);
    }
    UringServer(const UringServer&) = delete;
    UringServer& operator=(const UringServer&) = delete;

    int run() {
        raise_nofile_limit();
        if (int r = io_uring_queue_init(kEntries, &ring_, 0); r < 0)
            throw_sys("io_uring_queue_init", std::to_string(kEntries) + " entries", -r);
        ring_ok_ = true;
        listener_ = listen_tcp(opts_.host, opts_.port);
        where_ = local_address(listener_.get()).to_string();
        announce_listening(listener_.get());

        submit_stop_read();
        submit_accept();
        while (!stopping_)
            reap();
        shutdown();
        clients_.clear();
        print_summary(stats_);
        return 0;
    }

  private:
    // A free SQE, counted as in flight until its CQE is handled. When the
    // submission ring is full, what is in it goes to the kernel first.
    io_uring_sqe* new_sqe() {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        if (s == nullptr) {
            if (int r = io_uring_submit(&ring_); r < 0 && r != -EINTR)
                throw_sys("io_uring_submit", where_, -r);
            s = io_uring_get_sqe(&ring_);
            if (s == nullptr) throw_sys("io_uring_get_sqe", "submission ring full", EBUSY);
        }
        ++in_flight_;
        return s;
    }

    // ---- yours ----------------------------------------------------------------

    // One recv for `c`: up to kClientBufSize bytes into c.buf.
    void submit_recv(Client& c) {
        // TODO(you): take an SQE (new_sqe), prepare a recv of c's socket into
        // c.buf, tag it with tag(c.id, kRecv), mark c.in_flight
        // (LAB.md § The code: io_uring_prep_recv, io_uring_sqe_set_data64).
        (void)c;
    }

    // One send for `c`: the bytes buf[off, len) it is still owed.
    void submit_send(Client& c) {
        // TODO(you): the same for a send of c.buf + c.off, c.len - c.off bytes;
        // MSG_NOSIGNAL, so that a reset peer gives -EPIPE in the CQE and not
        // SIGPIPE; tag(c.id, kSend) (LAB.md § The code).
        (void)c;
    }

    // One round of the loop: submit what was prepared, wait for at least one
    // completion, hand each CQE's user_data and res to handle().
    void reap() {
        // TODO(you): io_uring_submit and io_uring_wait_cqe (or
        // io_uring_submit_and_wait), then every CQE that is there
        // (io_uring_peek_cqe or io_uring_for_each_cqe): handle(user_data, res),
        // and give its slot back (io_uring_cqe_seen / io_uring_cq_advance).
        // -EINTR from a wait is not an error (LAB.md § The code: the reap).
        // Until then: submit, nap, and see nothing.
        io_uring_submit(&ring_);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }

    // A recv completed: res bytes in c.buf, 0 (the peer's FIN) or -errno.
    void on_recv(Client& c, int res) {
        // TODO(you): bytes: count them (stats_.add_in), send them back
        // (off, len, submit_send); FIN: finish(c, "eof"); an error:
        // finish(c, a reason naming it) (LAB.md § The code: cqe->res).
        (void)c;
        (void)res;
    }

    // A send completed: res bytes went out (maybe fewer than asked) or -errno.
    void on_send(Client& c, int res) {
        // TODO(you): an error ends the client (finish); otherwise count the
        // bytes (stats_.add_out), advance off, send the rest if any is left,
        // else recv again (LAB.md § The code; § The five steps, step 1).
        (void)c;
        (void)res;
    }

    // ---- given ----------------------------------------------------------------

    void handle(uint64_t data, int res) {
        --in_flight_;  // one CQE per SQE: this request has left the kernel
        const auto op = static_cast<Op>(data & 0xff);
        const uint64_t id = data >> 8;
        switch (op) {
            case kAccept:
                on_accept(res);
                return;
            case kStop:
                if (res == -EAGAIN) {  // a kernel that does not wait on the signalfd
                    submit_stop_poll();
                    return;
                }
                if (res < 0) log_.error(sys_message("read", "signalfd", -res));
                stopping_ = true;  // SIGINT or SIGTERM
                return;
            case kStopPoll:
                if (res < 0) {
                    log_.error(sys_message("poll", "signalfd", -res));
                    stopping_ = true;
                } else {
                    submit_stop_read();
                }
                return;
            case kTimer:
                timer_armed_ = false;
                if (!stopping_) submit_accept();
                return;
            case kCancel:
                return;  // the cancelled request posts its own CQE
            case kRecv:
            case kSend:
                break;
            default:
                log_.error("io_uring: a completion with unknown user_data " + std::to_string(data));
                return;
        }
        auto it = clients_.find(id);
        if (it == clients_.end()) {
            log_.error("io_uring: a completion for client " + std::to_string(id) +
                       ", which is gone");
            return;
        }
        Client& c = *it->second;
        if (!c.in_flight)  // the kernel posts one CQE per SQE: this one was taken before
            throw std::runtime_error("io_uring: a second completion for client " + c.peer +
                                     " with no request in flight: is each CQE marked seen?");
        c.in_flight = false;
        if (stopping_) {  // no new request now: count what moved, and stop
            if (res > 0 && op == kRecv) stats_.add_in(static_cast<uint64_t>(res));
            if (res > 0 && op == kSend) stats_.add_out(static_cast<uint64_t>(res));
            return;
        }
        if (op == kRecv)
            on_recv(c, res);
        else
            on_send(c, res);
        if (!c.closing.empty() && !c.in_flight) {
            log_.info("disconnect " + c.peer + " (" + c.closing + ")");
            fds_.erase(c.fd.get());
            clients_.erase(it);  // close(2)
        }
    }

    // The client is done; it is freed once the kernel holds no request of it.
    void finish(Client& c, const std::string& reason) {
        if (c.closing.empty()) c.closing = reason;
    }

    void on_accept(int res) {
        if (res >= 0 && fds_.count(res) != 0)  // the same accept completion, taken twice
            throw std::runtime_error("io_uring: descriptor " + std::to_string(res) +
                                     " accepted twice: is each CQE marked seen?");
        if (res >= 0) {
            auto c = std::make_unique<Client>();
            c->fd.reset(res);
            c->peer = accepted_peer(res, log_);
            if (admit_or_refuse(c->peer, clients_.size(), opts_.max_clients, stats_, log_)) {
                c->id = ++last_id_;
                Client& ref = *c;
                fds_.insert(res);
                clients_.emplace(ref.id, std::move(c));
                submit_recv(ref);
            }
        } else if (is_resource_exhaustion(-res)) {
            // Out of descriptors: the connection stays in the backlog; asking
            // again at once would spin, so accept is armed again in 100 ms.
            log_.error(sys_message_fdless("accept", where_, -res));
            submit_timer();
            return;
        } else if (res != -ECANCELED) {
            log_.info(sys_message("accept", where_, -res));
        }
        if (!stopping_) submit_accept();
    }

    void submit_accept() {
        io_uring_sqe* s = new_sqe();
        io_uring_prep_accept(s, listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(s, tag(0, kAccept));
    }

    void submit_stop_read() {
        io_uring_sqe* s = new_sqe();
        io_uring_prep_read(s, stop_.fd(), &siginfo_, sizeof siginfo_, 0);
        io_uring_sqe_set_data64(s, tag(0, kStop));
    }

    void submit_stop_poll() {
        io_uring_sqe* s = new_sqe();
        io_uring_prep_poll_add(s, stop_.fd(), POLLIN);
        io_uring_sqe_set_data64(s, tag(0, kStopPoll));
    }

    void submit_timer() {
        if (timer_armed_ || stopping_) return;
        timeout_ = {0, 100'000'000};
        io_uring_sqe* s = new_sqe();
        io_uring_prep_timeout(s, &timeout_, 0, 0);
        io_uring_sqe_set_data64(s, tag(0, kTimer));
        timer_armed_ = true;
    }

    void submit_cancel(uint64_t target) {
        io_uring_sqe* s = new_sqe();
        io_uring_prep_cancel64(s, target, 0);
        io_uring_sqe_set_data64(s, tag(0, kCancel));
    }

    // Stop: cancel every request still in the kernel and reap until none is
    // left, so no buffer is freed while the kernel may still write into it.
    void shutdown() {
        submit_cancel(tag(0, kAccept));
        submit_cancel(tag(0, kTimer));
        for (auto& [id, c] : clients_) {
            if (!c->in_flight) continue;
            submit_cancel(tag(id, kRecv));
            submit_cancel(tag(id, kSend));
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline)
            reap();
        if (in_flight_ > 0) {
            log_.error("io_uring: " + std::to_string(in_flight_) +
                       " request(s) not completed at exit");
            for (auto& [id, c] : clients_)
                if (c->in_flight) (void)c.release();  // the kernel may still own its buffer
        }
    }

    StopSignals& stop_;
    const ServerOptions& opts_;
    Log log_;
    io_uring ring_{};
    bool ring_ok_ = false;
    Fd listener_;
    std::string where_;
    ServerStats stats_;
    __kernel_timespec timeout_{};
    signalfd_siginfo siginfo_{};  // the stop read's buffer
    std::unordered_map<uint64_t, std::unique_ptr<Client>> clients_;
    std::unordered_set<int> fds_;  // the clients' descriptors
    uint64_t last_id_ = 0;
    long in_flight_ = 0;  // SQEs taken whose CQE has not been handled
    bool stopping_ = false;
    bool timer_armed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    CLI::App app{
        "Write it yourself: an io_uring echo server's recv/send submissions and its "
        "completion loop (LAB.md, lab 05)"};
    iolab::add_server_options(app, "ex-uring", opts, iolab::kConnectionLogHelp);
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("ex-uring", [&] {
        iolab::StopSignals stop;  // blocks SIGINT/SIGTERM; first, before anything else
        UringServer server(stop, opts);
        return server.run();
    });
}
