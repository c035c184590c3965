// echo-sigio — the signal-driven I/O model: the kernel tells the process, by a
// signal, that something happened on a descriptor.
//
// Usage: echo-sigio [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//        echo-sigio --udp ...          the classic UDP echo, signal-driven
//        echo-sigio --sigpending N ... lower RLIMIT_SIGPENDING to watch overflows
//
// Three fcntl(2) calls turn a socket into a signal source:
//   F_SETOWN  getpid()   whom to signal (a process, a process group, a thread)
//   F_SETSIG  SIGRTMIN   which signal: a realtime one instead of plain SIGIO
//   F_SETFL   O_ASYNC    switch it on (sock_fasync: the socket joins the
//                        "async notification" list of the file)
// From then on, every time the socket's wait queue is woken — bytes arrived, a
// connection completed on a listener, send-buffer space came back after an
// EAGAIN, FIN, RST — the kernel queues one signal with a siginfo_t carrying
// si_fd (which descriptor) and si_band (the poll bits: POLLIN, POLLOUT, ...).
//
// Nothing here runs in a signal handler. The signals are blocked and taken
// synchronously with sigtimedwait(2), one siginfo at a time: the realtime queue
// *is* the event queue, like epoll_wait's array — but with edge semantics (one
// signal per wake-up, not per readable state), so each event is handled by
// doing I/O until EAGAIN.
//
// The weak spot: realtime signals queue up to RLIMIT_SIGPENDING per user. When
// the queue is full the kernel cannot queue the siginfo and falls back to a
// plain SIGIO (no si_fd, and SIGIO itself does not queue: many overflows read
// as one). Events are lost, so the only safe reply is a full scan: try every
// descriptor until EAGAIN. Run with `--sigpending 0` and -v to see the server
// live on scans alone.
//
// Linux notes: F_SETSIG is Linux-specific (_GNU_SOURCE). The accepted socket
// does not inherit O_ASYNC or O_NONBLOCK from the listener: each is set again.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <ctime>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>

#include "common/acceptor.hpp"  // kAcceptBatch
#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/reserve_fd.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

constexpr std::size_t kBufSize = 64 * 1024;  // the most one client can owe us
constexpr int kBudget = 16;                  // reads per client per turn (fairness)

// Asks the kernel to signal this process with `sig` whenever `fd`'s wait queue
// is woken, and makes the descriptor non-blocking (so "do I/O until EAGAIN" works).
void arm_async(int fd, int sig, std::string_view what) {
    // [lab:arm]
    if (::fcntl(fd, F_SETOWN, ::getpid()) < 0) throw_sys("fcntl F_SETOWN", what);
    // Without F_SETSIG (or with 0) the kernel sends plain SIGIO and fills in
    // no si_fd. With a realtime signal, each event is queued separately.
    if (::fcntl(fd, F_SETSIG, sig) < 0) throw_sys("fcntl F_SETSIG", what);
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) throw_sys("fcntl F_GETFL", what);
    if (::fcntl(fd, F_SETFL, flags | O_ASYNC | O_NONBLOCK) < 0)
        throw_sys("fcntl F_SETFL O_ASYNC", what);
    // [/lab:arm]
}

std::string band_text(long band) {
    std::string s;
    auto add = [&](long bit, const char* name) {
        if (band & bit) s += s.empty() ? name : std::string("|") + name;
    };
    add(POLLIN, "POLLIN");
    add(POLLOUT, "POLLOUT");
    add(POLLERR, "POLLERR");
    add(POLLHUP, "POLLHUP");
    add(POLLPRI, "POLLPRI");
    return s.empty() ? "0" : s;
}

// One TCP client: what it sent that we have not yet written back.
struct Client {
    Fd fd;
    std::string peer;
    std::unique_ptr<char[]> buf = std::make_unique<char[]>(kBufSize);
    std::size_t off = 0, len = 0;  // buf[off, len) is owed to the client
    bool eof = false;              // the client sent FIN
    bool queued = false;           // on the ready list
    std::string why;               // once finished: why, for the log line
};

struct Counters {
    uint64_t rt = 0, sigio = 0, scans = 0, stale = 0;
};

class SigioServer {
  public:
    // `stop` has blocked SIGINT/SIGTERM; this server takes them with
    // sigtimedwait instead of reading its signalfd.
    SigioServer(const ServerOptions& opts, StopSignals& stop, bool udp)
        : opts_(opts), stop_(stop), udp_(udp), log_(opts.verbose) {}

    int run() {
        raise_nofile_limit();
        rtsig_ = SIGRTMIN;  // glibc keeps the first two realtime signals for itself

        // Block the I/O signals too: they must stay pending until sigtimedwait
        // takes them. A blocked realtime signal queues; a blocked SIGIO is one bit.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, rtsig_);
        sigaddset(&set, SIGIO);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        if (int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0)
            throw_sys("pthread_sigmask", "SIGRTMIN/SIGIO", e);

        if (udp_) {
            open_udp();
        } else {
            listener_ = listen_tcp(opts_.host, opts_.port, ListenOptions{.nonblocking = true});
        }
        where_ = local_address(listener_.get()).to_string();
        arm_async(listener_.get(), rtsig_, where_);
        announce_listening(listener_.get());
        // Anything that arrived before O_ASYNC was set raised no signal: look once.
        full_scan();

        for (;;) {
            if (listener_more_) on_listener();  // the last batch did not empty the backlog
            drain_ready();
            // Wait for the next event: not at all if clients are still owed a
            // turn, briefly while accept is backing off, otherwise up to 1 s.
            // [lab:wait]
            timespec ts{1, 0};
            if (!ready_.empty() || listener_more_)
                ts = {0, 0};
            else if (accept_paused_)
                ts = {0, 100'000'000};
            siginfo_t si{};
            int sig = ::sigtimedwait(&set, &si, &ts);
            if (sig < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN) throw_sys("sigtimedwait", where_);
                if (accept_paused_) {  // timeout: try the backlog again
                    accept_paused_ = false;
                    on_listener();
                }
                continue;
            }
            if (sig == SIGINT || sig == SIGTERM) {
                stop_.request();  // taken here, not from the signalfd
                break;
            }
            if (sig == SIGIO) {
                on_overflow();
                continue;
            }
            ++count_.rt;
            on_event(si.si_fd, si.si_band);
            // [/lab:wait]
        }

        if (opts_.verbose)
            log_.info("signals: realtime=" + std::to_string(count_.rt) + " sigio=" +
                      std::to_string(count_.sigio) + " scans=" + std::to_string(count_.scans) +
                      " stale=" + std::to_string(count_.stale));
        conns_.clear();  // closes every connection: the clients read EOF
        print_summary(stats_);
        return 0;
    }

  private:
    void open_udp() {
        std::string last;
        for (const SockAddr& a : resolve(opts_.host, opts_.port, true)) {
            Fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
            if (!fd) throw_sys("socket", a.to_string());
            if (::bind(fd.get(), a.get(), a.len) == 0) {
                listener_ = std::move(fd);
                return;
            }
            last = sys_message("bind", a.to_string(), errno);
            if (errno != EADDRNOTAVAIL && errno != EAFNOSUPPORT) throw_sys("bind", a.to_string());
        }
        throw std::runtime_error(last.empty() ? "resolve " + opts_.host + ": no address" : last);
    }

    // One queued realtime signal: si_fd says which descriptor, si_band why.
    void on_event(int fd, long band) {
        if (fd == listener_.get()) {
            if (udp_) {
                queue(fd);
            } else if (!accept_paused_) {
                on_listener();
            }
            return;
        }
        auto it = conns_.find(fd);
        if (it == conns_.end()) {
            // The event was queued for a descriptor we have closed since:
            // signals already in the queue are not taken back by close(2).
            ++count_.stale;
            return;
        }
        if (opts_.verbose && (band & (POLLERR | POLLHUP)))
            log_.info("signal for " + it->second->peer + ": " + band_text(band));
        queue(fd);
    }

    // Plain SIGIO: a realtime signal could not be queued (RLIMIT_SIGPENDING).
    // Some events are gone and we cannot know which, so: empty the realtime
    // queue (its events are covered by the scan) and look at everything.
    void on_overflow() {
        ++count_.sigio;
        sigset_t rt;
        sigemptyset(&rt);
        sigaddset(&rt, rtsig_);
        timespec zero{0, 0};
        siginfo_t si{};
        std::size_t dropped = 0;
        while (::sigtimedwait(&rt, &si, &zero) > 0)
            ++dropped;
        log_.info("SIGIO: the realtime signal queue overflowed; " + std::to_string(dropped) +
                  " queued event(s) dropped, scanning " + std::to_string(conns_.size()) +
                  " connection(s)");
        full_scan();
    }

    void full_scan() {
        ++count_.scans;
        if (udp_)
            queue(listener_.get());
        else if (!accept_paused_)
            on_listener();
        for (auto& [fd, c] : conns_)
            queue(fd);
    }

    void queue(int fd) {
        if (fd == listener_.get()) {
            if (!udp_queued_) {
                udp_queued_ = true;
                ready_.push_back(fd);
            }
            return;
        }
        auto it = conns_.find(fd);
        if (it == conns_.end() || it->second->queued) return;
        it->second->queued = true;
        ready_.push_back(fd);
    }

    // Gives every client on the ready list one turn of at most kBudget reads.
    // A client that still has work goes to the back of the list: with edge
    // semantics no new signal would come for bytes already waiting.
    void drain_ready() {
        for (std::size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
            int fd = ready_.front();
            ready_.pop_front();
            bool more = false;
            if (udp_ && fd == listener_.get()) {
                udp_queued_ = false;
                more = serve_udp();
            } else {
                auto it = conns_.find(fd);
                if (it == conns_.end()) continue;
                it->second->queued = false;
                std::optional<bool> r = serve(*it->second);
                if (!r) {
                    log_.info("disconnect " + it->second->peer + " (" + it->second->why + ")");
                    conns_.erase(it);  // close(2)
                    continue;
                }
                more = *r;
            }
            if (more) queue(fd);
        }
    }

    // One signal may stand for several connections, and no new signal comes
    // for those already waiting: accept4 until EAGAIN, in batches of
    // kAcceptBatch (listener_more_: the next round goes on, after the clients
    // had their turn).
    void on_listener() {
        listener_more_ = false;
        for (std::size_t i = 0; i < kAcceptBatch; ++i) {
            Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
            if (!a) {
                if (a.err == EAGAIN || a.err == EWOULDBLOCK) return;
                if (is_resource_exhaustion(a.err)) {
                    ReserveFd::Outcome o = reserve_.shed(listener_.get(), a.err);
                    stats_.refused += o.shed;
                    shed_.note(log_, where_, a.err, o.shed);
                    if (o.pause) accept_paused_ = true;  // retried after 100 ms
                    if (o.pause || o.shed == 0) return;
                    continue;
                }
                log_.error(sys_message("accept", where_, a.err));
                return;
            }
            auto c = std::make_unique<Client>();
            c->peer = a.peer.to_string();
            if (conns_.size() >= opts_.max_clients) {
                stats_.refused.fetch_add(1);
                log_.info("refused " + c->peer + ": --max-clients reached");
                continue;  // a.fd closes it
            }
            try {
                arm_async(a.fd.get(), rtsig_, c->peer);
            } catch (const SysError& e) {
                stats_.refused.fetch_add(1);
                log_.error("refused " + c->peer + ": " + e.what());
                continue;
            }
            c->fd = std::move(a.fd);
            stats_.connections.fetch_add(1);
            log_.info("connect " + c->peer);
            int fd = c->fd.get();
            conns_[fd] = std::move(c);
            // Bytes may have arrived before O_ASYNC was on: they raised no signal.
            queue(fd);
        }
        listener_more_ = true;  // a full batch: more may be waiting
    }

    // Moves bytes for one client until EAGAIN or the budget is spent.
    // Returns true if there is more to do now, false if it waits for a signal,
    // nullopt if the connection is finished (closed by the caller).
    std::optional<bool> serve(Client& c) {
        for (int reads = 0;;) {
            if (c.off < c.len) {
                IoResult w = write_some(c.fd.get(), {c.buf.get() + c.off, c.len - c.off});
                stats_.add_out(w.bytes);
                c.off += w.bytes;
                if (w.would_block()) return false;  // POLL_OUT will come when there is room
                if (w.error()) {
                    c.why = "write: " + errno_text(w.err);
                    return std::nullopt;
                }
            }
            c.off = c.len = 0;
            if (c.eof) {
                c.why = "eof";  // all echoed, client done: close
                return std::nullopt;
            }
            if (reads++ == kBudget) return true;
            IoResult r = read_some(c.fd.get(), {c.buf.get(), kBufSize});
            if (r.would_block()) return false;  // POLL_IN will come with new bytes
            if (r.eof()) {
                c.eof = true;
                continue;
            }
            if (r.error()) {
                c.why = "read: " + errno_text(r.err);
                return std::nullopt;
            }
            stats_.add_in(r.bytes);
            c.len = r.bytes;
        }
    }

    // UDP: every datagram is one complete message with its sender's address,
    // so the signal is actually informative — one POLL_IN per datagram.
    bool serve_udp() {
        std::array<char, 65536> buf;
        for (int i = 0; i < kBudget; ++i) {
            SockAddr from;
            from.len = sizeof from.storage;
            ssize_t n = ::recvfrom(listener_.get(), buf.data(), buf.size(), MSG_TRUNC, from.get(),
                                   &from.len);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
                // An ICMP error from an earlier sendto (port unreachable) shows up here.
                log_.info(sys_message("recvfrom", where_, errno));
                continue;
            }
            std::size_t len = static_cast<std::size_t>(n);
            if (len > buf.size()) {  // MSG_TRUNC reports the real length
                log_.info("recvfrom " + from.to_string() + ": datagram of " + std::to_string(len) +
                          " bytes truncated; dropped");
                continue;
            }
            stats_.add_in(len);
            ssize_t w = ::sendto(listener_.get(), buf.data(), len, 0, from.get(), from.len);
            if (w < 0) {
                // UDP never waits: a full send buffer (EAGAIN) drops the echo.
                log_.info(sys_message("sendto", from.to_string(), errno));
                continue;
            }
            stats_.add_out(static_cast<uint64_t>(w));
        }
        return true;
    }

    const ServerOptions& opts_;
    StopSignals& stop_;
    bool udp_;
    Log log_;
    int rtsig_ = 0;
    Fd listener_;
    std::string where_;
    ServerStats stats_;
    std::unordered_map<int, std::unique_ptr<Client>> conns_;
    std::deque<int> ready_;
    bool udp_queued_ = false;
    bool accept_paused_ = false;
    bool listener_more_ = false;
    ReserveFd reserve_;
    ShedReport shed_;
    Counters count_;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    bool udp = false;
    std::optional<unsigned long> sigpending;
    CLI::App app{"Signal-driven echo server: O_ASYNC + F_SETSIG, events taken with sigtimedwait"};
    iolab::add_server_options(app, "echo-sigio", opts, iolab::kConnectionLogHelp);
    app.add_flag("--udp", udp, "Serve UDP echo (one datagram back per datagram) instead of TCP");
    app.add_option("--sigpending", sigpending,
                   "Set RLIMIT_SIGPENDING (queued realtime signals per user) to N; "
                   "0 makes every event overflow into SIGIO");
    IOLAB_PARSE(app, argc, argv);
    if (udp && app.count("--max-clients") > 0)
        return iolab::usage_error(app, "--max-clients: UDP has no connections (--udp)");
    return iolab::guarded_main("echo-sigio", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM
        if (sigpending) {
            rlimit rl{};
            if (::getrlimit(RLIMIT_SIGPENDING, &rl) != 0)
                iolab::throw_sys("getrlimit", "RLIMIT_SIGPENDING");
            rl.rlim_cur = *sigpending;
            if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
                rl.rlim_cur = rl.rlim_max;
            if (::setrlimit(RLIMIT_SIGPENDING, &rl) != 0)
                iolab::throw_sys("setrlimit", "RLIMIT_SIGPENDING");
        }
        SigioServer server(opts, stop, udp);
        return server.run();
    });
}
