// loop-echo — the echo server again, as one coroutine per client on the
// hand-written event loop of this lab.
//
// Usage: loop-echo [--host 127.0.0.1] [--port 0] [--max-clients N]
//                  [--out-limit BYTES] [-v]
//
// Compare it with labs/03-multiplexing/echo_epoll.cpp. There, a client is a
// struct (its descriptor, its output queue, its eof flag) and the loop calls
// client_ready() each time epoll reports it; the handler must find its place
// from the struct. Here, a client is a coroutine, serve(): the same state
// lives in its local variables, and where echo-epoll returned to the loop,
// serve() writes `co_await sock_ready(...)`. The system calls are the same —
// epoll_wait, read, write, and epoll_ctl only when the interest changes —
// which is the point of the benchmark in scripts/bench-event-loop.sh.
//
// The same bounded output queue (common/out_queue.hpp, --out-limit) and the
// same backpressure: a client whose queue is full is not read until it has
// read its echo. Accepting is one more coroutine (accept_loop); SIGINT or
// SIGTERM stops the loop, the client coroutines are destroyed (their sockets
// close), and the summary line is printed.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "common/out_queue.hpp"
#include "common/reserve_fd.hpp"
#include "common/server.hpp"
#include "labs/06-event-loop/combinators.hpp"

namespace {

using namespace evloop;
using namespace std::chrono_literals;
using iolab::IoResult;
using iolab::OutQueue;

struct Config {
    iolab::ServerOptions server;
    std::size_t out_limit = OutQueue::kDefaultLimit;
};

class EchoServer {
  public:
    EchoServer(EventLoop& loop, const Config& cfg)
        : loop_(loop), cfg_(cfg), log_(cfg.server.verbose), clients_(loop) {}

    int run() {
        listener_ = WatchedFd(
            loop_, iolab::listen_tcp(cfg_.server.host, cfg_.server.port, {.nonblocking = true}));
        where_ = iolab::local_address(listener_.get()).to_string();
        buf_.resize(64 * 1024);  // one read buffer: only one coroutine runs at a time
        Task<void> acceptor = accept_loop();
        acceptor.start(loop_);
        iolab::announce_listening(listener_.get());
        loop_.run_forever();  // until SIGINT/SIGTERM (add_signal_handler in main)
        acceptor = Task<void>();
        clients_.clear();  // destroys every client coroutine: their sockets close
        iolab::print_summary(stats_);
        return 0;
    }

  private:
    // --- accepting: one coroutine --------------------------------------------
    Task<void> accept_loop() {
        for (;;) {
            iolab::Accepted a = co_await sock_accept(loop_, listener_.get());
            if (!a) {
                if (!iolab::is_resource_exhaustion(a.err)) {
                    log_.error(iolab::sys_message("accept", where_, a.err));
                    continue;
                }
                // Out of descriptors: shed the backlog through the reserve
                // descriptor (see common/reserve_fd.hpp), or rest 100 ms.
                iolab::ReserveFd::Outcome o = reserve_.shed(listener_.get(), a.err);
                stats_.refused += o.shed;
                shed_report_.note(log_, where_, a.err, o.shed);
                if (o.pause) co_await sleep(loop_, 100ms);
                continue;
            }
            if (clients_.size() >= cfg_.server.max_clients) {
                ++stats_.refused;  // a.fd closes here
                log_.info("refused " + a.peer.to_string() + ": --max-clients reached");
                continue;
            }
            ++stats_.connections;
            clients_.spawn(serve(WatchedFd(loop_, std::move(a.fd)), a.peer.to_string()));
        }
    }

    // --- serving: one coroutine per client ---------------------------------
    // echo-epoll's client_ready() turned inside out: wait for what the client
    // needs now (to be read unless its queue is full or it sent FIN; to be
    // written while the queue holds bytes), then do it.
    Task<void> serve(WatchedFd sock, std::string peer) {
        log_.info("connect " + peer);
        const int fd = sock.get();
        OutQueue out(cfg_.out_limit);
        bool eof = false;
        std::string why = "done";
        while (!(eof && out.empty())) {
            const bool want_read = !eof && !out.full();  // full queue: backpressure
            const bool want_write = !out.empty();
            Ready r = co_await sock_ready(loop_, fd, want_read, want_write);
            if (r.writable) {
                IoResult w = out.flush(fd);  // send() until done or EAGAIN
                stats_.add_out(w.bytes);
                if (w.error()) {
                    why = w.describe("write", peer);
                    break;
                }
            }
            if (r.readable) {
                // Never more than the queue could take if the socket takes none.
                const std::size_t want = std::min(buf_.size(), out.room());
                IoResult rd = iolab::read_some(fd, std::span<char>(buf_.data(), want));
                if (rd.would_block()) continue;  // a stale report
                if (rd.eof()) {
                    eof = true;  // FIN: finish the echo, then close
                    continue;
                }
                if (rd.error()) {
                    why = rd.describe("read", peer);
                    break;
                }
                stats_.add_in(rd.bytes);
                if (!echo(fd, out, rd.bytes, peer, why)) break;
            }
        }
        log_.info("disconnect " + peer + " (" + why + ")");
    }  // `sock` closes here, after leaving the loop's interest set

    // Straight to the socket when nothing is queued (no copy), the rest — or
    // everything, if bytes already wait, to keep the order — into the queue.
    bool echo(int fd, OutQueue& out, std::size_t n, const std::string& peer, std::string& why) {
        std::size_t sent = 0;
        if (out.empty()) {
            IoResult w = iolab::write_some(fd, std::span<const char>(buf_.data(), n));
            stats_.add_out(w.bytes);
            if (w.error()) {
                why = w.describe("write", peer);
                return false;
            }
            sent = w.bytes;
        }
        out.append(std::span<const char>(buf_.data() + sent, n - sent));  // fits: n <= room
        return true;
    }

    EventLoop& loop_;
    const Config& cfg_;
    iolab::Log log_;
    iolab::ServerStats stats_;
    iolab::ShedReport shed_report_;
    iolab::ReserveFd reserve_;  // opened early, so it gets a low number
    WatchedFd listener_;
    std::string where_;
    std::vector<char> buf_;
    TaskSet clients_;  // last: destroyed first, while everything above is alive
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    CLI::App app{"Echo server: one coroutine per client on a hand-written epoll event loop"};
    iolab::add_server_options(app, "loop-echo", cfg.server);
    app.add_option("--out-limit", cfg.out_limit,
                   "Bytes queued per client before the server stops reading from it")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("loop-echo", [&] {
        iolab::raise_nofile_limit();
        EventLoop loop;
        loop.add_signal_handler();  // first: blocks SIGINT/SIGTERM, watches a signalfd
        EchoServer server(loop, cfg);
        return server.run();
    });
}
