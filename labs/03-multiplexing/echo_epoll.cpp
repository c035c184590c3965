// echo-epoll — readiness multiplexing with epoll(7): one thread, one interest
// set that lives in the kernel, and a wait that returns only the ready ones.
//
// Usage: echo-epoll [--host 127.0.0.1] [--port 0] [--max-clients N]
//                   [--out-limit BYTES] [--edge] [-v]
//
// select(2) and poll(2) hand the kernel the whole list of descriptors on every
// call, and the kernel walks all of it: O(connections) per wait, however few
// are active. epoll splits that in two. epoll_ctl(ADD/MOD/DEL) edits an
// interest set kept inside the kernel (a red-black tree keyed by descriptor),
// once per change. For each registered socket the kernel hooks a callback into
// the socket's wait queue; when the socket becomes ready — bytes arrive, send
// buffer space frees up — the callback puts it on the epoll instance's ready
// list. epoll_wait(2) then just copies out that ready list: O(ready) per wait.
// With 19,000 idle connections and 10 busy ones, it costs 10, not 19,000.
//
// Level-triggered (the default) means: epoll_wait keeps reporting a socket as
// long as the condition holds (unread bytes, room to write), exactly like
// poll(2). So this loop can read once per report and come back later.
// --edge registers with EPOLLET: a socket is reported when its state changes
// (new bytes arrived, buffer space freed), not while it stays ready. A loop
// that reads only part of what is there would then never hear about the rest;
// with --edge every handler therefore loops until the call says EAGAIN.
//
// Per client the server keeps a bounded output queue (--out-limit, 256 KiB)
// for echo bytes the socket would not take yet. It asks for EPOLLOUT only while
// that queue holds something (a writable socket is "ready" nearly always, and a
// level-triggered EPOLLOUT would wake the loop for nothing), and it stops
// asking for EPOLLIN while the queue is full: backpressure, the client's bytes
// wait in the kernel until the client reads its echo.
//
//                 epoll_ctl(ADD/MOD/DEL)          epoll_wait()
//   server  ───────────────────────────▶ kernel ◀──────────────── server
//                            interest set (rb-tree)   ready list ──▶ events[]
//      socket wakes up ──▶ ep_poll_callback ──▶ appended to the ready list
//
// Linux notes: the stop signalfd is one more descriptor in the interest set.
// EMFILE/ENFILE on accept is handled with a reserve descriptor (ReserveFd);
// EPOLLERR and EPOLLHUP are always reported, asked for or not.

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/out_queue.hpp"
#include "common/reserve_fd.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;
using Clock = std::chrono::steady_clock;

struct Config {
    ServerOptions server;
    std::size_t out_limit = OutQueue::kDefaultLimit;
    bool edge = false;
};

// Everything the server knows about one connection. Stored in a vector
// indexed by the descriptor number: the kernel hands out the lowest free
// number, so the vector stays dense, and an event's data.fd finds its client
// in O(1) without any map or allocation.
struct Client {
    Fd fd;                    // invalid: this slot is free
    std::string peer;         // "127.0.0.1:41234", for log lines
    OutQueue out;             // echo bytes the socket did not take yet
    uint32_t registered = 0;  // the event mask epoll holds for this fd now
    bool eof = false;         // the client sent FIN: finish the echo, then close
};

class EpollServer {
  public:
    EpollServer(const Config& cfg, StopSignals& stop)
        : cfg_(cfg), stop_(stop), log_(cfg.server.verbose) {}

    int run() {
        const uint64_t nofile = raise_nofile_limit();
        // Non-blocking listener: with --edge the accept loop runs until EAGAIN,
        // and in either mode a connection that vanishes between the readiness
        // report and accept() must not put the whole server to sleep.
        listener_ = listen_tcp(cfg_.server.host, cfg_.server.port,
                               {.nonblocking = true});
        where_ = local_address(listener_.get()).to_string();
        clients_.resize(static_cast<std::size_t>(std::min<uint64_t>(nofile, 1 << 16)));
        buf_.resize(64 * 1024);  // one read buffer for the whole loop
        events_.resize(1024);    // at most this many ready descriptors per wait

        // epoll_create1: a new, empty interest set, itself a descriptor.
        ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep_) throw_sys("epoll_create1", where_);
        add(stop_.fd(), EPOLLIN);  // a SIGINT/SIGTERM is just one more event
        add(listener_.get(), listen_events());
        announce_listening(listener_.get());

        bool stopping = false;
        while (!stopping) {
            // Sleep in the kernel until something in the interest set is ready.
            // No timeout unless accepting is paused (see pause_accepting()).
            int n = ::epoll_wait(ep_.get(), events_.data(), static_cast<int>(events_.size()),
                                 wait_timeout_ms());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("epoll_wait", where_);
            if (accept_paused_ && Clock::now() >= resume_at_) resume_accepting();

            // Only the ready descriptors come back: this loop is O(ready).
            for (int i = 0; i < n; ++i) {
                const int fd = events_[static_cast<std::size_t>(i)].data.fd;
                const uint32_t ev = events_[static_cast<std::size_t>(i)].events;
                if (fd == stop_.fd()) {
                    stopping = stop_.check();
                } else if (fd == listener_.get()) {
                    accept_ready();
                } else {
                    // A client closed earlier in this batch cannot show up
                    // again: epoll reports each descriptor at most once per
                    // call, and a client is closed only by its own event.
                    client_ready(clients_[static_cast<std::size_t>(fd)], ev);
                }
            }
        }
        for (auto& c : clients_)
            if (c.fd) close_client(c, "server stopping");
        print_summary(stats_);
        return 0;
    }

  private:
    uint32_t listen_events() const { return EPOLLIN | (cfg_.edge ? EPOLLET : 0u); }

    void add(int fd, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            throw_sys("epoll_ctl(ADD)", "fd " + std::to_string(fd));
    }

    // --- accepting -------------------------------------------------------

    void accept_ready() {
        // Level-triggered: take a bounded batch, epoll reports the listener
        // again if more are waiting. Edge-triggered: take all (until EAGAIN),
        // because the next report comes only with the next new connection.
        const std::size_t batch = cfg_.edge ? SIZE_MAX : 64;
        for (std::size_t i = 0; i < batch; ++i) {
            // accept4(..., SOCK_NONBLOCK): the new socket is non-blocking from
            // birth, no extra fcntl(2).
            Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
            if (!a) {
                if (a.err == EAGAIN || a.err == EWOULDBLOCK) return;  // backlog empty
                if (is_resource_exhaustion(a.err)) {
                    // Out of descriptors: the connection is still in the
                    // backlog and the listener still readable. Shed the
                    // backlog through the reserve descriptor, or pause.
                    ReserveFd::Outcome o = reserve_.shed(listener_.get(), a.err);
                    stats_.refused += o.shed;
                    shed_report_.note(log_, where_, a.err, o.shed);
                    if (o.pause) {
                        pause_accepting();
                        return;
                    }
                    // Edge-triggered: go on until accept says EAGAIN, or no
                    // new edge will ever tell us about what is left.
                    continue;
                }
                // Errors that belong to one connection (ENETDOWN, EPROTO, ...):
                // that connection is gone; take the next.
                log_.error(sys_message("accept", where_, a.err));
                continue;
            }
            if (open_ >= cfg_.server.max_clients) {
                ++stats_.refused;  // a.fd closes as it goes out of scope
                log_.info("refused " + a.peer.to_string() + ": --max-clients reached");
                continue;
            }
            const int fd = a.fd.get();
            if (static_cast<std::size_t>(fd) >= clients_.size())
                clients_.resize(static_cast<std::size_t>(fd) + 1);
            Client& c = clients_[static_cast<std::size_t>(fd)];
            c.registered = EPOLLIN | (cfg_.edge ? EPOLLET : 0u);
            epoll_event ev{};
            ev.events = c.registered;
            ev.data.fd = fd;
            if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
                // ENOMEM, or ENOSPC: fs.epoll.max_user_watches reached.
                log_.error(sys_message("epoll_ctl(ADD)", a.peer.to_string(), errno));
                ++stats_.refused;
                continue;
            }
            c.fd = std::move(a.fd);
            c.peer = a.peer.to_string();
            c.out = OutQueue(cfg_.out_limit);
            c.eof = false;
            ++open_;
            ++stats_.connections;
            log_.info("connect " + c.peer);
        }
    }

    // Stop watching the listener for 100 ms: the only way not to spin when
    // accept fails and nothing can be shed (out of kernel memory).
    void pause_accepting() {
        if (accept_paused_) return;
        epoll_event ev{};
        ev.data.fd = listener_.get();
        ev.events = 0;  // still registered, but no event asked for
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, listener_.get(), &ev) != 0)
            throw_sys("epoll_ctl(MOD)", where_);
        accept_paused_ = true;
        resume_at_ = Clock::now() + std::chrono::milliseconds(100);
    }

    void resume_accepting() {
        epoll_event ev{};
        ev.data.fd = listener_.get();
        ev.events = listen_events();
        // MOD re-checks readiness at once: if connections are waiting, the
        // listener is on the ready list again, in edge mode too.
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, listener_.get(), &ev) != 0)
            throw_sys("epoll_ctl(MOD)", where_);
        accept_paused_ = false;
    }

    int wait_timeout_ms() const {
        if (!accept_paused_) return -1;
        auto left = std::chrono::ceil<std::chrono::milliseconds>(resume_at_ - Clock::now());
        return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
    }

    // --- serving -----------------------------------------------------------

    void client_ready(Client& c, uint32_t ev) {
        if (!c.fd) return;
        if (ev & EPOLLERR) {
            // The connection failed (a RST arrived, a retransmission timed
            // out): SO_ERROR holds the reason and clears it.
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            close_client(c, sys_message("connection", c.peer, err != 0 ? err : ECONNRESET));
            return;
        }
        if (ev & EPOLLHUP) {
            // Both directions are shut (typically a reset): nothing can be
            // read or written any more.
            close_client(c, "hang-up");
            return;
        }
        // Write first: draining the queue makes room for what is read next.
        if ((ev & EPOLLOUT) && !flush(c)) return;
        if ((ev & EPOLLIN) && !read_and_echo(c)) return;
        update_interest(c);
    }

    // Sends what is queued. false when the client was closed.
    bool flush(Client& c) {
        IoResult r = c.out.flush(c.fd.get());  // send() until done or EAGAIN
        stats_.add_out(r.bytes);
        if (r.error()) {
            close_client(c, r.describe("write", c.peer));
            return false;
        }
        if (c.eof && c.out.empty()) {
            close_client(c, "done");
            return false;
        }
        return true;
    }

    // Reads and echoes. false when the client was closed.
    bool read_and_echo(Client& c) {
        for (;;) {
            // Never read more than the queue could hold if the socket takes
            // none of it: a full queue means stop reading (backpressure).
            const std::size_t want = std::min(buf_.size(), c.out.room());
            if (want == 0) break;
            IoResult r = read_some(c.fd.get(), std::span<char>(buf_.data(), want));
            if (r.would_block()) break;  // the receive buffer is empty (EAGAIN)
            if (r.eof()) {
                c.eof = true;  // FIN: no more input; the echo still goes out
                break;
            }
            if (r.error()) {
                close_client(c, r.describe("read", c.peer));
                return false;
            }
            stats_.add_in(r.bytes);
            if (!echo(c, r.bytes)) return false;
            // Level-triggered: one read per report is enough, epoll_wait will
            // report this socket again while bytes remain. Edge-triggered:
            // keep going until EAGAIN (or a full queue, see update_interest).
            if (!cfg_.edge) break;
        }
        if (c.eof && c.out.empty()) {
            close_client(c, "done");
            return false;
        }
        return true;
    }

    // Echoes buf_[0, n): straight to the socket when nothing is queued (the
    // common case: no copy), the rest — or everything, if bytes are already
    // waiting, to keep the order — into the client's queue.
    bool echo(Client& c, std::size_t n) {
        std::size_t sent = 0;
        if (c.out.empty()) {
            IoResult w = write_some(c.fd.get(), std::span<const char>(buf_.data(), n));
            stats_.add_out(w.bytes);
            if (w.error()) {
                close_client(c, w.describe("write", c.peer));
                return false;
            }
            sent = w.bytes;
        }
        c.out.append(std::span<const char>(buf_.data() + sent, n - sent));  // fits: n <= room
        return true;
    }

    // Tells the kernel what this client waits for now — only when it changed,
    // since every epoll_ctl is a system call.
    void update_interest(Client& c) {
        uint32_t want = 0;
        if (!c.eof && !c.out.full()) want |= EPOLLIN;  // full queue: stop reading
        if (!c.out.empty()) want |= EPOLLOUT;          // only while output waits
        if (cfg_.edge) want |= EPOLLET;
        if (want == c.registered) return;
        epoll_event ev{};
        ev.events = want;
        ev.data.fd = c.fd.get();
        // EPOLL_CTL_MOD also re-checks the socket at once: if bytes are already
        // waiting when EPOLLIN is asked for again, the socket goes straight on
        // the ready list. That is what makes resuming a paused reader safe in
        // edge-triggered mode, where no new edge would come.
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) != 0) {
            close_client(c, sys_message("epoll_ctl(MOD)", c.peer, errno));
            return;
        }
        c.registered = want;
    }

    void close_client(Client& c, const std::string& why) {
        // Out of the interest set first, then close. (A closed descriptor
        // leaves the set by itself only when no duplicate of it — dup, fork —
        // is open anywhere; deleting it explicitly never leaves a stale entry.)
        ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
        log_.info("disconnect " + c.peer + " (" + why + ")");
        c.fd.reset();  // close(2)
        c.out.clear();
        c.registered = 0;
        --open_;
    }

    const Config& cfg_;
    StopSignals& stop_;
    Log log_;
    ServerStats stats_;
    ShedReport shed_report_;
    ReserveFd reserve_;  // opened early, so it gets a low number
    Fd listener_;
    Fd ep_;
    std::string where_;
    std::vector<Client> clients_;      // indexed by descriptor
    std::vector<char> buf_;            // the loop's one read buffer
    std::vector<epoll_event> events_;  // filled by epoll_wait
    std::size_t open_ = 0;
    bool accept_paused_ = false;
    Clock::time_point resume_at_{};
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    CLI::App app{"Echo server: one thread, epoll(7) (level-triggered, or --edge)"};
    iolab::add_server_options(app, "echo-epoll", cfg.server);
    app.add_option("--out-limit", cfg.out_limit,
                   "Bytes queued per client before the server stops reading from it")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_flag("--edge", cfg.edge, "Edge-triggered (EPOLLET): drain every socket to EAGAIN");
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-epoll", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        EpollServer server(cfg, stop);
        return server.run();
    });
}
