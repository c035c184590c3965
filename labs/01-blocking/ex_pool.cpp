// ex-pool — write it yourself: the thread pool of a blocking echo server.
// Once your two pieces are in place this program is echo-threaded --pool N
// --queue Q, and the tests that check a pool run on it.
//
// Usage: ex-pool [--host 127.0.0.1] [--port 0] [--pool N] [--queue Q]
//                [--max-clients N] [-v]
//
// What is done already: the echo of one client (serve, as in ex-threaded),
// the accept loop (accept_client, --max-clients, errors logged, never fatal),
// N worker threads started before it and joined after it, the stop path (a
// signalfd watched by one thread: it shuts down the listener and every open
// connection, so blocked calls return; run() then closes the clients still
// queued, wakes every worker and waits for the last) and the summary line.
// What is yours (the two TODO(you)s, LAB.md § The code):
//
//   enqueue(c)  the accept loop's hand-off: refuse c when Q clients already
//               wait; else count it, queue it and wake one sleeping worker;
//   worker()    the loop of each of the N threads: sleep until the queue
//               holds a client (or the server stops), take it out, serve it
//               with the lock released, and go back for the next.
//
// As shipped, enqueue() serves the client right there, in the accepting
// thread (one client at a time, and none is ever refused), and worker()
// returns at once. labs/01-blocking/echo_threaded.cpp (--pool) is the
// reference answer; write yours before you read it.
//
// Check it (LAB.md exercise ex-pool): from the repository root,
//     . scripts/lab.sh
//     lab_build ex-pool test_ex_pool && lab_ctest ex-pool
// runs the echo integration tests on build/bin/ex-pool --pool N --queue Q,
// plus two of the pool's own: N clients served at once, and the client that
// finds the pool busy and the queue full refused and counted in refused=.
//
// Linux notes: a worker asleep in condition_variable::wait sleeps in
// futex(2); notify_one wakes one such sleeper, if there is one.

#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
    const std::size_t queue_max;  // --queue: clients that may wait for a worker
    ServerStats stats;            // atomic counters: add_in, add_out, connections, refused
    Log log;
    OpenConnections open;  // what the stop path shuts down

    std::mutex mu;                    // guards the four below
    std::condition_variable changed;  // the queue grew, a client finished, or stopping
    std::size_t active = 0;           // clients a worker is serving now
    std::deque<Client> queue;         // accepted, waiting for a worker
    bool stopping = false;            // set by run() at stop: workers return

    Server(const ServerOptions& o, std::size_t q) : opts(o), queue_max(q), log(o.verbose) {}

    // Echoes one client until it leaves; then forgets and closes it.
    void serve(Client c) {
        std::array<char, 64 * 1024> buf;
        std::string why;
        while (why.empty()) {
            const ssize_t n = ::read(c.fd.get(), buf.data(), buf.size());  // sleeps in the kernel
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) why = "eof";  // the client's FIN (or the stop path's shutdown)
            if (n < 0) why = "read: " + errno_text(errno);
            if (n <= 0) break;
            stats.add_in(static_cast<uint64_t>(n));
            const IoResult w =
                write_all(c.fd.get(), std::span<const char>(buf.data(), static_cast<size_t>(n)));
            stats.add_out(w.bytes);
            if (!w.ok()) why = "write: " + errno_text(w.err);
        }
        open.remove(c.fd.get());
        log.info("disconnect " + c.peer + " (" + why + ")");
    }  // c.fd closes here

    // A worker is done with its client: one fewer active; run() may be waiting.
    void finished() {
        std::lock_guard lock(mu);
        --active;
        changed.notify_all();
    }

    // `c` is taken: counted in connections=, logged, and known to the stop path.
    void accepted(const Client& c) {
        stats.connections.fetch_add(1);
        log.info("connect " + c.peer);
        open.add(c.fd.get());
    }

    // The accept loop's hand-off. Returns false when the queue is full: the
    // caller counts c as refused, and c closes when it goes out of scope.
    bool enqueue(Client& c) {
        // TODO(you): (LAB.md § The code, "With --pool, the acceptor pushes the
        // connection under the lock") under `mu`: if queue_max clients already
        // wait, return false; else accepted(c), push c (moved) at the back of
        // `queue`, wake one sleeping worker (changed.notify_one()), return
        // true. As shipped, the client is served right here, in the accepting
        // thread: one at a time, and nobody is ever refused.
        accepted(c);
        {
            std::lock_guard lock(mu);
            ++active;
        }
        serve(std::move(c));
        finished();
        return true;
    }

    // The loop of each of the N pool threads.
    void worker() {
        // TODO(you): (LAB.md § The code, "A worker sleeps in changed.wait()")
        // forever: with a std::unique_lock on `mu`, changed.wait until
        // `stopping` or the queue is not empty; an empty queue then means
        // stopping: return. Else move the front client out, pop it, ++active,
        // and release the lock BEFORE serve(client) (a worker that serves
        // with the lock held stops the others and the accept loop); then
        // finished(). As shipped, the worker returns at once.
    }
};

int run(const ServerOptions& opts, StopSignals& stop, unsigned pool, std::size_t queue_max) {
    Fd listener = listen_and_announce(opts, false);

    Server server(opts, queue_max);
    auto watch = stop.watch([&] {
        ::shutdown(listener.get(), SHUT_RDWR);  // wakes accept() with EINVAL
        server.open.shutdown_all();             // wakes every read() with 0
    });

    std::vector<std::thread> workers;
    for (unsigned i = 0; i < pool; ++i)
        workers.emplace_back([&] { server.worker(); });

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
        bool too_many = false;
        {
            std::lock_guard lock(server.mu);
            too_many = server.active + server.queue.size() >= opts.max_clients;
        }
        const char* refuse = too_many             ? "--max-clients reached"
                             : !server.enqueue(c) ? "--queue full"
                                                  : nullptr;
        if (refuse != nullptr) {
            server.stats.refused.fetch_add(1);
            server.log.info("refused " + c.peer + ": " + refuse);
        }  // a refused client's Fd closes here
    }

    // Stopping: the watcher shut every open connection down, so each
    // worker's read() returns 0. Queued clients never got a worker: close
    // them. Wake every worker (they return), wait for the last client.
    {
        std::unique_lock lock(server.mu);
        server.stopping = true;
        for (auto& c : server.queue)
            server.open.remove(c.fd.get());
        server.queue.clear();
        server.changed.notify_all();
        server.changed.wait(lock, [&] { return server.active == 0; });
    }
    for (auto& t : workers)
        t.join();
    print_summary(server.stats);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    unsigned pool = 4;
    std::size_t queue_max = 16;
    CLI::App app{"Write it yourself: a blocking echo server with a thread pool (lab 01)"};
    iolab::add_server_options(app, "ex-pool", opts, iolab::kConnectionLogHelp);
    app.add_option("--pool", pool, "Worker threads that serve the clients")
        ->check(CLI::Range(1u, 100000u))
        ->capture_default_str();
    app.add_option("--queue", queue_max,
                   "Accepted clients that may wait for a worker; more are refused")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("ex-pool", [&] {
        iolab::StopSignals stop;  // first: every thread inherits the blocked mask
        return run(opts, stop, pool, queue_max);
    });
}
