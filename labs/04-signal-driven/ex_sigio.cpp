// ex-sigio — write it yourself: the signal-driven echo server of this lab
// (echo-sigio, TCP only), with two of its pieces left to you.
//
// Usage: ex-sigio [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                 [--sigpending N]   lower RLIMIT_SIGPENDING to force overflows
//
// Two exercises share this file, each a TODO(you) of its own (LAB.md, "Write
// the core yourself"):
//   ex-sigio-setup   arm_async and its call for each accepted client: the
//                    fcntl calls that make a socket raise a realtime signal
//                    carrying si_fd (LAB.md § The model, § The code)
//   ex-sigio-rescan  on_overflow and full_scan: what to do when plain SIGIO
//                    arrives instead — the realtime queue overflowed and
//                    events were lost (LAB.md § What realtime signals add,
//                    exercise 3)
// Until they are written the server listens and never hears of anything: no
// signal arrives, so nothing is accepted.
//
// Check: scripts/lab.sh's lab_ctest ex-sigio-setup (the echo integration
// tests on this binary, and one that needs realtime signals) and lab_ctest
// ex-sigio-rescan (every client served when only plain SIGIO ever comes).
//
// Linux notes: F_SETSIG is Linux-specific (_GNU_SOURCE).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
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
// `what` (an address) is for the error messages.
void arm_async(int fd, int sig, std::string_view what) {
    // TODO(you): ex-sigio-setup. Three things for the kernel to record: who
    // gets the signal (this process), which signal (`sig`, a realtime one:
    // queued, one per event, with si_fd; the default, plain SIGIO, carries
    // neither), and "on" (O_ASYNC, O_NONBLOCK) — added to the flags the
    // socket already has. A failure throws (throw_sys) naming the fcntl
    // command and `what` (LAB.md § The model, § The code).
    (void)fd;
    (void)sig;
    (void)what;
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
    SigioServer(const ServerOptions& opts, StopSignals& stop)
        : opts_(opts), stop_(stop), log_(opts.verbose) {}

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

        listener_ = listen_tcp(opts_.host, opts_.port, ListenOptions{.nonblocking = true});
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
    // One queued realtime signal: si_fd says which descriptor, si_band why.
    void on_event(int fd, long band) {
        if (fd == listener_.get()) {
            if (!accept_paused_) on_listener();
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
    void on_overflow() {
        ++count_.sigio;
        // TODO(you): ex-sigio-rescan. Some events are lost and nothing says
        // which. The realtime signals still queued (rtsig_) may be taken
        // without waiting (sigtimedwait with a zero timeout) and dropped: the
        // scan covers them. Log one line, "SIGIO: the realtime signal queue
        // overflowed; N queued event(s) dropped, scanning M connection(s)",
        // then scan (LAB.md § What realtime signals add, exercise 3).
    }

    // Looks at everything, as if every descriptor had signalled: the
    // listener (accept until EAGAIN, unless accepting is paused) and every
    // connection (queue(fd) gives it a turn of I/O until EAGAIN).
    void full_scan() {
        ++count_.scans;
        // TODO(you): ex-sigio-rescan (LAB.md § What realtime signals add).
    }

    void queue(int fd) {
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
            auto it = conns_.find(fd);
            if (it == conns_.end()) continue;
            it->second->queued = false;
            std::optional<bool> r = serve(*it->second);
            if (!r) {
                log_.info("disconnect " + it->second->peer + " (" + it->second->why + ")");
                conns_.erase(it);  // close(2)
                continue;
            }
            if (*r) queue(fd);
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
            // TODO(you): ex-sigio-setup. The new socket inherits no O_ASYNC
            // from the listener: arm it too. If that fails, refuse this client
            // (count it in stats_.refused, log why, `continue`: a.fd closes it)
            // and keep serving the others (LAB.md § The code).
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

    const ServerOptions& opts_;
    StopSignals& stop_;
    Log log_;
    int rtsig_ = 0;
    Fd listener_;
    std::string where_;
    ServerStats stats_;
    std::unordered_map<int, std::unique_ptr<Client>> conns_;
    std::deque<int> ready_;
    bool accept_paused_ = false;
    bool listener_more_ = false;
    ReserveFd reserve_;
    ShedReport shed_;
    Counters count_;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    std::optional<unsigned long> sigpending;
    CLI::App app{
        "Write it yourself: the signal-driven echo server's setup (F_SETOWN, F_SETSIG, "
        "O_ASYNC) and its rescan after an overflow (LAB.md, lab 04)"};
    iolab::add_server_options(app, "ex-sigio", opts, iolab::kConnectionLogHelp);
    app.add_option("--sigpending", sigpending,
                   "Set RLIMIT_SIGPENDING (queued realtime signals per user) to N; "
                   "0 makes every event overflow into SIGIO");
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("ex-sigio", [&] {
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
        SigioServer server(opts, stop);
        return server.run();
    });
}
