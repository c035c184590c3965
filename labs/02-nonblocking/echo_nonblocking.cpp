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
// A client whose output queue (--out-limit) is full is not read from until
// the queue drains (backpressure; common/echo_session.hpp).
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
// round. Accepting, EMFILE shedding and --max-clients: common/acceptor.hpp.

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "common/echo_server.hpp"

namespace {

using namespace iolab;

class Server {
  public:
    Server(EchoLoop& loop, unsigned idle_sleep_us) : loop_(loop), idle_sleep_us_(idle_sleep_us) {}

    void run() {
        auto admit = [&](Fd& fd, const std::string& peer) {
            loop_.clients.open(std::move(fd), peer);
            return std::string();
        };
        // loop_.stop.check() is a read(2) on the non-blocking signalfd: EAGAIN
        // every round, until a SIGINT/SIGTERM is pending.
        while (!loop_.stop.check()) {
            // accept4() on the non-blocking listener: EAGAIN when the backlog
            // is empty. (When accept fails with nothing to shed, the acceptor
            // pauses for 100 ms instead of failing every round.)
            loop_.acceptor.resume_due();
            bool progress =
                loop_.acceptor.accept_batch(loop_.clients.size(), kAcceptBatch, admit) > 0;
            // Try every client: send what is queued, read what arrived (not
            // while its queue is full). Most of these calls say EAGAIN.
            // Backwards, so that removing client i (the last one moves into
            // its place) never skips a client this round.
            const std::vector<int>& open = loop_.clients.fds();
            for (std::size_t i = open.size(); i-- > 0;) {
                Client& c = loop_.clients[open[i]];
                Next next = loop_.session.serve(c, true, true);
                progress |= next.moved;
                if (!next.close.empty()) loop_.clients.close(c, next.close);
            }
            if (!progress && idle_sleep_us_ > 0) ::usleep(idle_sleep_us_);
        }
    }

  private:
    EchoLoop& loop_;
    unsigned idle_sleep_us_;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::EchoOptions opts;
    CLI::App app{"Echo server: non-blocking sockets, one busy loop, no readiness call"};
    iolab::add_echo_options(app, "echo-nonblocking", opts);
    unsigned idle_sleep_us = 0;
    app.add_option("--idle-sleep-us", idle_sleep_us,
                   "Microseconds to sleep after a round in which nothing happened")
        ->check(CLI::Range(0u, 1000000u))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-nonblocking", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        return iolab::serve_echo(opts, stop,
                                 [&](iolab::EchoLoop& loop) { Server(loop, idle_sleep_us).run(); });
    });
}
