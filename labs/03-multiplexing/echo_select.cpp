// echo-select — readiness multiplexing with select(2), the oldest form: one
// thread, bitmaps of descriptors, one system call that says which are ready.
//
// Usage: echo-select [--host 127.0.0.1] [--port 0] [--max-clients N]
//                    [--out-limit BYTES] [-v]
//
// An fd_set is a bitmap with one bit per descriptor number. The program sets
// the bits it cares about — readfds: tell me when a read (or accept) would not
// block; writefds: tell me when a write would not block — and passes
// maxfd + 1, the number of bits to look at. The kernel copies the bitmaps in,
// calls the poll method of every descriptor whose bit is set, sleeps on all of
// their wait queues if none is ready, and on wakeup overwrites the bitmaps
// with the answer: only the ready bits are left. That is why the sets are
// rebuilt from the program's own state before every call. Cost: O(maxfd) per
// call in the kernel and again in the program, which must test every bit.
//
// The hard limit: glibc's fd_set has FD_SETSIZE = 1024 bits. FD_SET(1500, &s)
// writes past the end of the structure — memory corruption, not an error
// code. A select server must therefore refuse any connection whose
// descriptor number is >= FD_SETSIZE; this one closes it at once, says so
// in a log line, and keeps serving the clients it has.
//
// Per client the server keeps a bounded output queue (--out-limit, 256 KiB);
// it sets the writefds bit only while that queue holds something, and clears
// the readfds bit while it is full (backpressure).
//
//   readfds  (in)   0 0 0 1 1 0 1 1 1 ... (listener, signalfd, clients)
//   writefds (in)   0 0 0 0 0 0 0 1 0 ...  (clients with queued output)
//            select(maxfd + 1, &readfds, &writefds, NULL, NULL)
//   readfds  (out)  0 0 0 0 1 0 0 0 1 ...  only the ready bits survive
//
// Linux notes: the stop signalfd is one more bit in readfds. EMFILE/ENFILE on
// accept is handled with a reserve descriptor (ReserveFd).

#include <sys/select.h>
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

// One connection, in an array indexed by descriptor: select() can only ever
// watch numbers below FD_SETSIZE, so the array has exactly that many slots.
// `index` is its place in the list of open clients.
struct Client {
    Fd fd;             // invalid: this slot is free
    std::string peer;  // "127.0.0.1:41234", for log lines
    OutQueue out;      // echo bytes the socket did not take yet
    std::size_t index = 0;
    bool eof = false;  // the client sent FIN: finish the echo, then close
};

class SelectServer {
  public:
    SelectServer(const Config& cfg, StopSignals& stop)
        : cfg_(cfg), stop_(stop), log_(cfg.server.verbose) {}

    int run() {
        raise_nofile_limit();
        // Non-blocking listener: a connection that vanishes between select()
        // and accept() must not put the whole server to sleep in accept().
        listener_ = listen_tcp(cfg_.server.host, cfg_.server.port,
                               {.nonblocking = true});
        where_ = local_address(listener_.get()).to_string();
        if (listener_.get() >= FD_SETSIZE || stop_.fd() >= FD_SETSIZE)
            throw_sys("select", "listener fd " + std::to_string(listener_.get()), EBADF);
        clients_.resize(FD_SETSIZE);
        buf_.resize(64 * 1024);  // one read buffer for the whole loop
        announce_listening(listener_.get());

        for (;;) {
            // select() overwrites the sets with its answer, so they are built
            // again, from our own state, before every call.
            fd_set readfds, writefds;
            FD_ZERO(&readfds);
            FD_ZERO(&writefds);
            int maxfd = stop_.fd();
            FD_SET(stop_.fd(), &readfds);
            if (!accept_paused_) {
                FD_SET(listener_.get(), &readfds);
                maxfd = std::max(maxfd, listener_.get());
            }
            for (int fd : open_) {  // every fd here is < FD_SETSIZE (see accept_ready)
                const Client& c = clients_[static_cast<std::size_t>(fd)];
                if (!c.eof && !c.out.full()) FD_SET(fd, &readfds);  // full: stop reading
                if (!c.out.empty()) FD_SET(fd, &writefds);          // only while output waits
                maxfd = std::max(maxfd, fd);
            }

            timeval tv{};
            timeval* timeout = nullptr;  // NULL: sleep until something is ready
            if (accept_paused_) {
                auto left = std::chrono::duration_cast<std::chrono::microseconds>(resume_at_ -
                                                                                  Clock::now());
                auto us = std::max<std::chrono::microseconds::rep>(left.count(), 0);
                tv.tv_sec = static_cast<time_t>(us / 1000000);
                tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
                timeout = &tv;
            }
            int n = ::select(maxfd + 1, &readfds, &writefds, nullptr, timeout);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("select", where_);
            if (accept_paused_ && Clock::now() >= resume_at_) accept_paused_ = false;

            if (FD_ISSET(stop_.fd(), &readfds) && stop_.check()) break;
            // Test every client's bits: O(clients) whatever n is. Walk the
            // list backwards, so that removing entry i (the last one moves
            // into its place) never skips one not yet looked at.
            for (std::size_t i = open_.size(); i-- > 0;) {
                const int fd = open_[i];
                const bool r = FD_ISSET(fd, &readfds), w = FD_ISSET(fd, &writefds);
                if (r || w) client_ready(clients_[static_cast<std::size_t>(fd)], r, w);
            }
            // Last, so that a client accepted now is not tested against bits
            // that belonged to an earlier holder of its number.
            if (!accept_paused_ && FD_ISSET(listener_.get(), &readfds)) accept_ready();
        }
        while (!open_.empty())
            close_client(clients_[static_cast<std::size_t>(open_.back())], "server stopping");
        print_summary(stats_);
        return 0;
    }

  private:
    // --- accepting -------------------------------------------------------

    void accept_ready() {
        // A bounded batch: select() reports the listener again if more wait.
        for (int i = 0; i < 64; ++i) {
            Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
            if (!a) {
                if (a.err == EAGAIN || a.err == EWOULDBLOCK) return;  // backlog empty
                if (is_resource_exhaustion(a.err)) {
                    // Out of descriptors: the connection stays in the backlog
                    // and the listener readable. Shed the backlog through the
                    // reserve descriptor, or stop watching it for a while.
                    ReserveFd::Outcome o = reserve_.shed(listener_.get(), a.err);
                    stats_.refused += o.shed;
                    shed_report_.note(log_, where_, a.err, o.shed);
                    if (o.pause) {
                        accept_paused_ = true;
                        resume_at_ = Clock::now() + std::chrono::milliseconds(100);
                    }
                    return;
                }
                log_.error(sys_message("accept", where_, a.err));  // that one is gone
                continue;
            }
            const int fd = a.fd.get();
            if (fd >= FD_SETSIZE) {
                // FD_SET would write outside the fd_set. Refuse (close), say
                // why, and go on serving the clients already here.
                ++stats_.refused;
                log_.error("refused " + a.peer.to_string() + ": descriptor " + std::to_string(fd) +
                           " >= FD_SETSIZE (" + std::to_string(FD_SETSIZE) +
                           "), select() cannot watch it");
                continue;
            }
            if (open_.size() >= cfg_.server.max_clients) {
                ++stats_.refused;
                log_.info("refused " + a.peer.to_string() + ": --max-clients reached");
                continue;
            }
            Client& c = clients_[static_cast<std::size_t>(fd)];
            c.fd = std::move(a.fd);
            c.peer = a.peer.to_string();
            c.out = OutQueue(cfg_.out_limit);
            c.eof = false;
            c.index = open_.size();
            open_.push_back(fd);
            ++stats_.connections;
            log_.info("connect " + c.peer);
        }
    }

    // --- serving -----------------------------------------------------------

    void client_ready(Client& c, bool readable, bool writable) {
        // select() has no separate error report: a reset or failed connection
        // shows up as "readable" or "writable", and the read or write that
        // follows returns the error.
        if (writable && !flush(c)) return;  // first: makes room for the next read
        if (readable) read_and_echo(c);
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

    // One read per report (select is level-triggered: it reports the socket
    // again while bytes remain), never more than the queue could hold.
    void read_and_echo(Client& c) {
        const std::size_t want = std::min(buf_.size(), c.out.room());
        if (want > 0) {
            IoResult r = read_some(c.fd.get(), std::span<char>(buf_.data(), want));
            if (r.eof()) {
                c.eof = true;  // FIN: no more input; the echo still goes out
            } else if (r.error()) {
                close_client(c, r.describe("read", c.peer));
                return;
            } else if (r.ok()) {
                stats_.add_in(r.bytes);
                std::size_t sent = 0;
                if (c.out.empty()) {  // nothing queued: straight to the socket
                    IoResult w =
                        write_some(c.fd.get(), std::span<const char>(buf_.data(), r.bytes));
                    stats_.add_out(w.bytes);
                    if (w.error()) {
                        close_client(c, w.describe("write", c.peer));
                        return;
                    }
                    sent = w.bytes;
                }
                // The rest waits in the queue (it fits: we read at most room()).
                c.out.append(std::span<const char>(buf_.data() + sent, r.bytes - sent));
            }
        }
        if (c.eof && c.out.empty()) close_client(c, "done");
    }

    void close_client(Client& c, const std::string& why) {
        // Out of the interest list first (the last entry takes its place),
        // so no later round sets a bit for a closed or reused number.
        const std::size_t i = c.index;
        if (i + 1 != open_.size()) {
            open_[i] = open_.back();
            clients_[static_cast<std::size_t>(open_[i])].index = i;
        }
        open_.pop_back();
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
    std::vector<Client> clients_;  // indexed by descriptor, FD_SETSIZE slots
    std::vector<int> open_;        // the descriptors of open clients
    std::vector<char> buf_;        // the loop's one read buffer
    bool accept_paused_ = false;
    Clock::time_point resume_at_{};
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    CLI::App app{"Echo server: one thread, select(2) (descriptors below FD_SETSIZE only)"};
    iolab::add_server_options(app, "echo-select", cfg.server);
    app.add_option("--out-limit", cfg.out_limit,
                   "Bytes queued per client before the server stops reading from it")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-select", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        SelectServer server(cfg, stop);
        return server.run();
    });
}
