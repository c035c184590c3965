// echo-poll — readiness multiplexing with poll(2): one thread, one array of
// struct pollfd, one system call that says which of them are ready.
//
// Usage: echo-poll [--host 127.0.0.1] [--port 0] [--max-clients N]
//                  [--out-limit BYTES] [-v]
//
// The program keeps an array of {fd, events, revents}: for every descriptor,
// what it waits for (POLLIN: bytes to read or a connection to accept;
// POLLOUT: room in the send buffer). poll(2) copies the whole array into the
// kernel, calls each socket's poll method — and if none is ready, hooks the
// thread onto every socket's wait queue and sleeps until one of them wakes it
// — then copies the array back with revents filled in. Unlike select(2) there
// is no FD_SETSIZE ceiling and nothing to rebuild: `events` survives the call,
// and the program edits the array only when a client comes, goes, or changes
// what it waits for. Like select(2), the cost of each call is O(array size):
// with 19,000 idle connections and one busy one, every wakeup still walks
// 19,000 entries in the kernel (that walk is what epoll removes).
//
// Per client the server keeps a bounded output queue (--out-limit, 256 KiB)
// for echo bytes the socket would not take yet; it asks for POLLOUT only while
// that queue holds something and stops asking for POLLIN while it is full
// (backpressure). POLLHUP, POLLERR and POLLNVAL are reported whether asked for
// or not.
//
//   pollfd[]  { listener POLLIN } { signalfd POLLIN } { c1 POLLIN } { c2 POLLIN|POLLOUT } ...
//        │  poll(fds, n, -1)  — copied in, every entry checked, copied out
//        ▼
//   revents   {      POLLIN     } {        0        } {     0     } {      POLLOUT       } ...
//
// Linux notes: the stop signalfd sits in the array like any socket. EMFILE/
// ENFILE on accept is handled with a reserve descriptor (ReserveFd).

#include <poll.h>
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
};

// One connection. Stored in a vector indexed by descriptor (dense: the kernel
// hands out the lowest free number); `slot` is its entry in the pollfd array.
struct Client {
    Fd fd;             // invalid: this slot is free
    std::string peer;  // "127.0.0.1:41234", for log lines
    OutQueue out;      // echo bytes the socket did not take yet
    std::size_t slot = 0;
    bool eof = false;  // the client sent FIN: finish the echo, then close
};

class PollServer {
  public:
    PollServer(const Config& cfg, StopSignals& stop)
        : cfg_(cfg), stop_(stop), log_(cfg.server.verbose) {}

    int run() {
        const uint64_t nofile = raise_nofile_limit();
        // Non-blocking listener: a connection that vanishes between poll()
        // and accept() must not put the whole server to sleep in accept().
        listener_ = listen_tcp(cfg_.server.host, cfg_.server.port,
                               {.nonblocking = true});
        where_ = local_address(listener_.get()).to_string();
        clients_.resize(static_cast<std::size_t>(std::min<uint64_t>(nofile, 1 << 16)));
        buf_.resize(64 * 1024);  // one read buffer for the whole loop

        // The first two entries never move: the listener and the signalfd.
        fds_.push_back({listener_.get(), POLLIN, 0});
        fds_.push_back({stop_.fd(), POLLIN, 0});
        announce_listening(listener_.get());

        for (;;) {
            // The whole array goes in; every entry's revents comes back.
            int n = ::poll(fds_.data(), fds_.size(), wait_timeout_ms());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("poll", where_);
            if (accept_paused_ && Clock::now() >= resume_at_) {
                accept_paused_ = false;
                fds_[kListener].fd = listener_.get();
            }
            if (fds_[kSignal].revents & POLLIN) {
                if (stop_.check()) break;
                --n;
            }
            // Clients first, then accept: new clients get slots at the end,
            // with revents 0, and are not looked at before the next poll().
            // Walk backwards so that removing entry i (the last one moves into
            // its place) never skips an entry not yet looked at. Stop as soon
            // as all `n` ready entries have been seen.
            const bool listener_ready = fds_[kListener].revents != 0;
            if (listener_ready) --n;
            for (std::size_t i = fds_.size(); i-- > kFirstClient && n > 0;) {
                const short rev = fds_[i].revents;
                if (rev == 0) continue;
                --n;
                client_ready(clients_[static_cast<std::size_t>(fds_[i].fd)], rev);
            }
            if (listener_ready) accept_ready();
        }
        for (std::size_t i = fds_.size(); i-- > kFirstClient;)
            close_client(clients_[static_cast<std::size_t>(fds_[i].fd)], "server stopping");
        print_summary(stats_);
        return 0;
    }

  private:
    static constexpr std::size_t kListener = 0, kSignal = 1, kFirstClient = 2;

    // --- accepting -------------------------------------------------------

    void accept_ready() {
        // Take a bounded batch: poll() reports the listener again if more wait.
        // The batch is large because every poll() walks the whole array: with
        // thousands of clients, fewer rounds per accepted connection matter.
        for (int i = 0; i < 256; ++i) {
            Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
            if (!a) {
                if (a.err == EAGAIN || a.err == EWOULDBLOCK) return;  // backlog empty
                if (is_resource_exhaustion(a.err)) {
                    // Out of descriptors: the connection stays in the backlog
                    // and the listener stays readable. Shed the backlog through
                    // the reserve descriptor, or stop watching it for a while.
                    ReserveFd::Outcome o = reserve_.shed(listener_.get(), a.err);
                    stats_.refused += o.shed;
                    shed_report_.note(log_, where_, a.err, o.shed);
                    if (o.pause) pause_accepting();
                    return;
                }
                log_.error(sys_message("accept", where_, a.err));  // that one is gone
                continue;
            }
            if (fds_.size() - kFirstClient >= cfg_.server.max_clients) {
                ++stats_.refused;  // a.fd closes as it goes out of scope
                log_.info("refused " + a.peer.to_string() + ": --max-clients reached");
                continue;
            }
            const int fd = a.fd.get();
            if (static_cast<std::size_t>(fd) >= clients_.size())
                clients_.resize(static_cast<std::size_t>(fd) + 1);
            Client& c = clients_[static_cast<std::size_t>(fd)];
            c.fd = std::move(a.fd);
            c.peer = a.peer.to_string();
            c.out = OutQueue(cfg_.out_limit);
            c.eof = false;
            c.slot = fds_.size();
            fds_.push_back({fd, POLLIN, 0});  // the interest set grows by one entry
            ++stats_.connections;
            log_.info("connect " + c.peer);
        }
    }

    // Stop watching the listener for 100 ms (a negative fd is skipped by
    // poll): the way not to spin when accept fails and nothing can be shed.
    void pause_accepting() {
        accept_paused_ = true;
        fds_[kListener].fd = -1;
        fds_[kListener].revents = 0;
        resume_at_ = Clock::now() + std::chrono::milliseconds(100);
    }

    int wait_timeout_ms() const {
        if (!accept_paused_) return -1;
        auto left = std::chrono::ceil<std::chrono::milliseconds>(resume_at_ - Clock::now());
        return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
    }

    // --- serving -----------------------------------------------------------

    void client_ready(Client& c, short rev) {
        if (rev & POLLNVAL) {  // not an open descriptor: a bug, but never spin on it
            close_client(c, "POLLNVAL");
            return;
        }
        if (rev & POLLERR) {
            // The connection failed (a RST, a retransmission timeout):
            // SO_ERROR holds the reason.
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            close_client(c, sys_message("connection", c.peer, err != 0 ? err : ECONNRESET));
            return;
        }
        if (rev & POLLHUP) {  // both directions shut: nothing more can move
            close_client(c, "hang-up");
            return;
        }
        // Write first: draining the queue makes room for what is read next.
        if ((rev & POLLOUT) && !flush(c)) return;
        if ((rev & POLLIN) && !read_and_echo(c)) return;
        // Say what this client waits for in the next poll().
        short want = 0;
        if (!c.eof && !c.out.full()) want |= POLLIN;  // full queue: stop reading
        if (!c.out.empty()) want |= POLLOUT;          // only while output waits
        fds_[c.slot].events = want;
    }

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

    // One read per report (poll is level-triggered: it reports the socket
    // again while bytes remain), never more than the queue could hold.
    bool read_and_echo(Client& c) {
        const std::size_t want = std::min(buf_.size(), c.out.room());
        if (want > 0) {
            IoResult r = read_some(c.fd.get(), std::span<char>(buf_.data(), want));
            if (r.eof()) {
                c.eof = true;  // FIN: no more input; the echo still goes out
            } else if (r.error()) {
                close_client(c, r.describe("read", c.peer));
                return false;
            } else if (r.ok()) {
                stats_.add_in(r.bytes);
                std::size_t sent = 0;
                if (c.out.empty()) {  // nothing queued: straight to the socket
                    IoResult w =
                        write_some(c.fd.get(), std::span<const char>(buf_.data(), r.bytes));
                    stats_.add_out(w.bytes);
                    if (w.error()) {
                        close_client(c, w.describe("write", c.peer));
                        return false;
                    }
                    sent = w.bytes;
                }
                // The rest waits in the queue (it fits: we read at most room()).
                c.out.append(std::span<const char>(buf_.data() + sent, r.bytes - sent));
            }
        }
        if (c.eof && c.out.empty()) {
            close_client(c, "done");
            return false;
        }
        return true;
    }

    void close_client(Client& c, const std::string& why) {
        // Out of the interest set first: the last entry moves into this one's
        // slot, so the array stays dense (poll's cost is its length).
        const std::size_t slot = c.slot;
        if (slot + 1 != fds_.size()) {
            fds_[slot] = fds_.back();
            clients_[static_cast<std::size_t>(fds_[slot].fd)].slot = slot;
        }
        fds_.pop_back();
        log_.info("disconnect " + c.peer + " (" + why + ")");
        c.fd.reset();  // close(2)
        c.out.clear();
    }

    const Config& cfg_;
    StopSignals& stop_;
    Log log_;
    ServerStats stats_;
    ShedReport shed_report_;
    ReserveFd reserve_;  // opened early, so it gets a low number
    Fd listener_;
    std::string where_;
    std::vector<Client> clients_;  // indexed by descriptor
    std::vector<pollfd> fds_;      // the interest set, handed to poll() whole
    std::vector<char> buf_;        // the loop's one read buffer
    bool accept_paused_ = false;
    Clock::time_point resume_at_{};
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    CLI::App app{"Echo server: one thread, poll(2)"};
    iolab::add_server_options(app, "echo-poll", cfg.server);
    app.add_option("--out-limit", cfg.out_limit,
                   "Bytes queued per client before the server stops reading from it")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-poll", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        PollServer server(cfg, stop);
        return server.run();
    });
}
