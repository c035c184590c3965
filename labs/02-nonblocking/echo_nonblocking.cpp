// echo-nonblocking — the non-blocking I/O model without any readiness call:
// one thread that tries everything, over and over.
//
// Usage: echo-nonblocking [--host 127.0.0.1] [--port 0] [--max-clients N]
//                         [--out-limit BYTES] [--idle-sleep-us N] [-v]
//
// Every socket is O_NONBLOCK, so no call ever puts the thread to sleep: when
// there is nothing to do, accept(2) and read(2) fail at once with EAGAIN, and
// write(2) takes only what fits in the send buffer (a short count, or EAGAIN
// when the buffer is full). One loop therefore serves all clients: each round
// it checks the stop signalfd, tries accept, then for every client tries to
// send what it still owes and to read what has arrived. It never waits for
// the slowest client — and it never waits at all. With nothing to do it still
// makes one failing system call per client per round, as fast as the CPU
// allows: 100% of a core with zero clients (watch it in `top`).
//
// --idle-sleep-us N sleeps N microseconds after a round in which nothing
// happened. That gives the core back, but a byte that arrives during the
// sleep waits for it to end: latency bought with CPU, or CPU with latency.
// Telling the kernel "wake me when one of these is ready" is what select,
// poll and epoll (labs/03-multiplexing) add.
//
// Per client the server keeps a bounded output queue (--out-limit, 256 KiB)
// for the echo bytes the socket would not take yet, and stops reading from a
// client while its queue is full (backpressure).
//
//     ┌───────────────────────── one round ───────────────────────────┐
//     │ read(signalfd) → EAGAIN                                        │
//     │ accept4(listener) → new fd | EAGAIN                            │
//     │ for each client: send(queued) → n | EAGAIN                     │
//     │                  read(fd)     → n | 0 (FIN) | EAGAIN | error   │
//     │ nothing happened? usleep(--idle-sleep-us)                      │
//     └─────────────────────────── repeat ─────────────────────────────┘
//
// Linux notes: SIGINT/SIGTERM arrive on a non-blocking signalfd, read once per
// round. EMFILE/ENFILE on accept is handled with a reserve descriptor.

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
    unsigned idle_sleep_us = 0;
};

struct Client {
    Fd fd;
    std::string peer;  // "127.0.0.1:41234", for log lines
    OutQueue out;      // echo bytes the socket did not take yet
    bool eof = false;  // the client sent FIN: finish the echo, then close
};

class NonblockingServer {
  public:
    NonblockingServer(const Config& cfg, StopSignals& stop)
        : cfg_(cfg), stop_(stop), log_(cfg.server.verbose) {}

    int run() {
        raise_nofile_limit();
        // The listening socket is non-blocking too: accept() returns EAGAIN
        // when the backlog is empty instead of sleeping.
        listener_ = listen_tcp(cfg_.server.host, cfg_.server.port,
                               {.nonblocking = true});
        where_ = local_address(listener_.get()).to_string();
        buf_.resize(64 * 1024);  // one read buffer for the whole loop
        announce_listening(listener_.get());

        // stop_.check() is a read(2) on the non-blocking signalfd: EAGAIN
        // every round, until a SIGINT/SIGTERM is pending.
        while (!stop_.check()) {
            bool progress = accept_new();
            // Backwards, so that removing client i (the last one moves into
            // its place) never skips a client this round.
            for (std::size_t i = clients_.size(); i-- > 0;)
                progress |= serve(i);
            if (!progress && cfg_.idle_sleep_us > 0) ::usleep(cfg_.idle_sleep_us);
        }
        while (!clients_.empty())
            remove(clients_.size() - 1, "server stopping");
        print_summary(stats_);
        return 0;
    }

  private:
    // Takes every connection waiting in the backlog. true if any came.
    bool accept_new() {
        if (accept_paused_) {
            if (Clock::now() < resume_at_) return false;
            accept_paused_ = false;
        }
        bool any = false;
        for (int i = 0; i < 64; ++i) {
            // SOCK_NONBLOCK: the new socket is non-blocking from birth.
            Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
            if (!a) {
                if (a.err == EAGAIN || a.err == EWOULDBLOCK) break;  // nobody waiting
                if (is_resource_exhaustion(a.err)) {
                    // Out of descriptors: the connection stays in the backlog,
                    // and this loop would fail on it every round. Shed the
                    // backlog through the reserve descriptor, or pause.
                    ReserveFd::Outcome o = reserve_.shed(listener_.get(), a.err);
                    stats_.refused += o.shed;
                    shed_report_.note(log_, where_, a.err, o.shed);
                    if (o.pause) {
                        accept_paused_ = true;
                        resume_at_ = Clock::now() + std::chrono::milliseconds(100);
                    }
                    return any || o.shed > 0;
                }
                log_.error(sys_message("accept", where_, a.err));  // that one is gone
                continue;
            }
            any = true;
            if (clients_.size() >= cfg_.server.max_clients) {
                ++stats_.refused;  // a.fd closes as it goes out of scope
                log_.info("refused " + a.peer.to_string() + ": --max-clients reached");
                continue;
            }
            Client c;
            c.fd = std::move(a.fd);
            c.peer = a.peer.to_string();
            c.out = OutQueue(cfg_.out_limit);
            ++stats_.connections;
            log_.info("connect " + c.peer);
            clients_.push_back(std::move(c));
        }
        return any;
    }

    // One try at client i: send what is queued, read what arrived, echo it.
    // true if any byte moved (or the client went away).
    bool serve(std::size_t i) {
        Client& c = clients_[i];
        bool progress = false;
        if (!c.out.empty()) {
            IoResult w = c.out.flush(c.fd.get());  // EAGAIN while the send buffer is full
            stats_.add_out(w.bytes);
            progress = w.bytes > 0;
            if (w.error()) {
                remove(i, w.describe("write", c.peer));
                return true;
            }
        }
        // Read no more than the queue could hold if the socket takes none of
        // it. A full queue means: do not read (backpressure).
        const std::size_t want = c.eof ? 0 : std::min(buf_.size(), c.out.room());
        if (want > 0) {
            IoResult r = read_some(c.fd.get(), std::span<char>(buf_.data(), want));
            if (r.eof()) {
                c.eof = true;  // FIN: no more input; the echo still goes out
                progress = true;
            } else if (r.error()) {
                remove(i, r.describe("read", c.peer));
                return true;
            } else if (r.ok()) {  // (would_block: nothing arrived; the usual case)
                progress = true;
                stats_.add_in(r.bytes);
                std::size_t sent = 0;
                if (c.out.empty()) {  // nothing queued: straight to the socket
                    IoResult w =
                        write_some(c.fd.get(), std::span<const char>(buf_.data(), r.bytes));
                    stats_.add_out(w.bytes);
                    if (w.error()) {
                        remove(i, w.describe("write", c.peer));
                        return true;
                    }
                    sent = w.bytes;
                }
                c.out.append(std::span<const char>(buf_.data() + sent, r.bytes - sent));
            }
        }
        if (c.eof && c.out.empty()) {
            remove(i, "done");
            return true;
        }
        return progress;
    }

    void remove(std::size_t i, const std::string& why) {
        log_.info("disconnect " + clients_[i].peer + " (" + why + ")");
        if (i + 1 != clients_.size()) clients_[i] = std::move(clients_.back());  // closes i's fd
        clients_.pop_back();  // closes the fd if i was the last
    }

    const Config& cfg_;
    StopSignals& stop_;
    Log log_;
    ServerStats stats_;
    ShedReport shed_report_;
    ReserveFd reserve_;  // opened early, so it gets a low number
    Fd listener_;
    std::string where_;
    std::vector<Client> clients_;
    std::vector<char> buf_;  // the loop's one read buffer
    bool accept_paused_ = false;
    Clock::time_point resume_at_{};
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    CLI::App app{"Echo server: non-blocking sockets, one busy loop, no readiness call"};
    iolab::add_server_options(app, "echo-nonblocking", cfg.server);
    app.add_option("--out-limit", cfg.out_limit,
                   "Bytes queued per client before the server stops reading from it")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--idle-sleep-us", cfg.idle_sleep_us,
                   "Microseconds to sleep after a round in which nothing happened")
        ->check(CLI::Range(0u, 1000000u))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-nonblocking", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        NonblockingServer server(cfg, stop);
        return server.run();
    });
}
