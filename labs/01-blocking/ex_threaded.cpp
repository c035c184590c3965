// ex-threaded — write it yourself: the thread-per-connection echo server.
// Once your two pieces are in place this program is echo-threaded (without
// --pool), and the integration tests that check echo-threaded run on it.
//
// Usage: ex-threaded [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//
// What is done already: the accept loop of echo-blocking (accept_client,
// --max-clients, errors logged, never fatal), the stop path (a signalfd
// watched by one thread: it shuts down the listener and every open
// connection, so blocked calls return) and the summary line. What is yours
// (the two TODO(you)s, LAB.md § The code):
//
//   serve(c)   the echo of one client: read(2) until EOF, write_all every
//              chunk back, count the bytes, say why it ended;
//   spawn(c)   hand the client to a new thread of its own, so the accept
//              loop goes back to accept() at once; count it as active (at
//              stop, run() waits until none is).
//
// As shipped, serve() echoes nothing (the client is closed at once) and
// spawn() calls it in the accepting thread: one client at a time, like
// echo-blocking. labs/01-blocking/echo_threaded.cpp is the reference answer;
// write yours before you read it.
//
// Check it (LAB.md exercise ex-threaded): from the repository root,
//     . scripts/lab.sh
//     lab_build ex-threaded test_ex_threaded && lab_ctest ex-threaded
// runs the echo integration tests (100 concurrent clients echoed byte for
// byte, resets, SIGTERM summary, --max-clients, a client served while another
// sits idle) on build/bin/ex-threaded and prints "check: PASS" or what is
// missing.
//
// Linux notes: a std::thread is a kernel task (clone(2)) with its own 8 MiB
// stack reserved; a detached one frees itself when its function returns.

#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

struct Client {
    Fd fd;
    std::string peer;
};

// Everything the threads share. No globals: run() owns one Server.
struct Server {
    const ServerOptions& opts;
    ServerStats stats;  // atomic counters: add_in, add_out
    Log log;
    OpenConnections open;  // what the stop path shuts down

    std::mutex mu;
    std::condition_variable changed;
    std::size_t active = 0;  // connections being served now (under mu)

    explicit Server(const ServerOptions& o) : opts(o), log(o.verbose) {}

    // Echoes one client until it leaves; then forgets and closes it.
    void serve(Client c) {
        std::string why;
        // TODO(you): (LAB.md § The code, echo_blocking.cpp's serve) the echo
        // loop: read(2) up to 64 KiB into a buffer (EINTR: again; 0: the
        // client's FIN, or the stop path's shutdown: why = "eof"; -1: why =
        // "read: " + errno_text(errno)); stats.add_in(n); write_all the n
        // bytes back, stats.add_out(what it wrote); a failed write ends it
        // (why = "write: " + errno_text(w.err)).
        why = "serve() is not written yet: closed without an echo";
        open.remove(c.fd.get());
        log.info("disconnect " + c.peer + " (" + why + ")");
    }  // c.fd closes here

    // The thread of a client is done: one fewer active; run() may be waiting.
    void finished() {
        std::lock_guard lock(mu);
        --active;
        changed.notify_all();
    }

    // Serves `c` on a thread of its own, so the accept loop goes on at once.
    void spawn(Client c) {
        {
            std::lock_guard lock(mu);
            ++active;
        }
        // TODO(you): (LAB.md § The code, "Without --pool each client gets a
        // fresh std::thread") start a std::thread that takes c (moved into
        // it), calls serve() and then finished(), and detach it: nobody
        // joins it; run() waits for `active` to reach 0 instead. As shipped,
        // the client is served right here, in the accepting thread.
        serve(std::move(c));
        finished();
    }
};

int run(const ServerOptions& opts, StopSignals& stop) {
    Fd listener = listen_and_announce(opts, false);

    Server server(opts);
    auto watch = stop.watch([&] {
        ::shutdown(listener.get(), SHUT_RDWR);  // wakes accept() with EINVAL
        server.open.shutdown_all();             // wakes every read() with 0
    });

    while (!stop.requested()) {
        Accepted a = accept_client(listener.get());
        if (!a) {
            if (stop.requested()) break;
            server.log.error(
                sys_message("accept", local_address(listener.get()).to_string(), a.err));
            if (is_resource_exhaustion(a.err)) ::usleep(100 * 1000);
            continue;
        }
        Client c{std::move(a.fd), a.peer.to_string()};
        bool refuse = false;
        {
            std::lock_guard lock(server.mu);
            refuse = server.active >= opts.max_clients;
        }
        if (refuse) {
            server.stats.refused.fetch_add(1);
            server.log.info("refused " + c.peer + ": --max-clients reached");
            continue;  // the Fd closes the connection
        }
        server.stats.connections.fetch_add(1);
        server.log.info("connect " + c.peer);
        server.open.add(c.fd.get());
        server.spawn(std::move(c));
    }

    // Stopping: the watcher shut every open connection down, so each
    // thread's read() returns 0 and it ends. Wait for the last one.
    {
        std::unique_lock lock(server.mu);
        server.changed.wait(lock, [&] { return server.active == 0; });
    }
    print_summary(server.stats);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    CLI::App app{"Write it yourself: a blocking echo server, a thread per connection (lab 01)"};
    iolab::add_server_options(app, "ex-threaded", opts, iolab::kConnectionLogHelp);
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("ex-threaded", [&] {
        iolab::StopSignals stop;  // first: every thread inherits the blocked mask
        return run(opts, stop);
    });
}
