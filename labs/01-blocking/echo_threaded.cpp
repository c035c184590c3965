// echo-threaded — the blocking I/O model made concurrent with threads.
//
// Usage: echo-threaded [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//        echo-threaded --pool N [--queue Q] ...   (N >= 1; --queue only with --pool)
//
// Default: one thread per connection. Each thread makes the same blocking
// read/write calls as echo-blocking; the kernel's scheduler switches between
// the threads while they sleep, so one slow client no longer stops the others.
// The cost is a kernel thread (8 MiB of reserved stack, a task_struct, context
// switches) per connection: watch `ps -L -p PID` grow with every client.
//
// --pool N: a fixed pool of N threads takes accepted connections from a bounded
// queue of Q. With more than N clients at once, the extra ones wait in the
// queue exactly as echo-blocking's clients wait in the backlog; when the queue
// is full the server refuses the connection (closes it at once).
//
// Linux notes: SIGINT/SIGTERM arrive through a signalfd watched by one thread;
// stop shuts down the listener and every open connection so blocked calls return.

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

// Everything the threads share. No globals: main owns one Server.
struct Server {
    const ServerOptions& opts;
    ServerStats stats;
    Log log;
    OpenConnections open;

    std::mutex mu;
    std::condition_variable changed;
    std::size_t active = 0;    // connections being served now
    std::deque<Client> queue;  // --pool: accepted, waiting for a thread
    bool stopping = false;

    explicit Server(const ServerOptions& o) : opts(o), log(o.verbose) {}

    void serve(Client c) {
        std::array<char, 64 * 1024> buf;
        std::string why;
        while (why.empty()) {
            ssize_t n = ::read(c.fd.get(), buf.data(), buf.size());  // sleeps in the kernel
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) why = "eof";  // the client's FIN (or a stop's shutdown)
            if (n < 0) why = "read: " + errno_text(errno);
            if (n <= 0) break;
            stats.add_in(static_cast<uint64_t>(n));
            IoResult w = write_all(c.fd.get(), std::span<const char>(buf.data(), size_t(n)));
            stats.add_out(w.bytes);
            if (!w.ok()) why = "write: " + errno_text(w.err);
        }
        open.remove(c.fd.get());
        log.info("disconnect " + c.peer + " (" + why + ")");
    }

    void finished() {
        std::lock_guard lock(mu);
        --active;
        changed.notify_all();
    }

    // Thread-per-connection: a new thread for each client, detached; the count
    // of active ones lets main wait for all of them at stop.
    void spawn(Client c) {
        {
            std::lock_guard lock(mu);
            ++active;
        }
        std::thread([this, c = std::move(c)]() mutable {
            serve(std::move(c));
            finished();
        }).detach();
    }

    // --pool: a worker takes the next queued connection, or ends at stop.
    void worker() {
        // [lab:worker]
        for (;;) {
            Client c;
            {
                std::unique_lock lock(mu);
                changed.wait(lock, [&] { return stopping || !queue.empty(); });
                if (queue.empty()) return;  // stopping and nothing left
                c = std::move(queue.front());
                queue.pop_front();
                ++active;
            }
            serve(std::move(c));
            finished();
        }
        // [/lab:worker]
    }
};

int run(const ServerOptions& opts, StopSignals& stop, unsigned pool, std::size_t queue_max) {
    Fd listener = listen_and_announce(opts, false);

    Server server(opts);
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
        const char* refuse = nullptr;
        {
            std::lock_guard lock(server.mu);
            if (server.active + server.queue.size() >= opts.max_clients)
                refuse = "--max-clients reached";
            else if (pool > 0 && server.queue.size() >= queue_max)
                refuse = "--queue full";
        }
        if (refuse != nullptr) {
            server.stats.refused.fetch_add(1);
            server.log.info("refused " + c.peer + ": " + refuse);
            continue;  // the Fd closes the connection
        }
        server.stats.connections.fetch_add(1);
        server.log.info("connect " + c.peer);
        server.open.add(c.fd.get());
        // [lab:handoff]
        if (pool == 0) {
            server.spawn(std::move(c));
        } else {
            std::lock_guard lock(server.mu);
            server.queue.push_back(std::move(c));
            server.changed.notify_one();
        }
        // [/lab:handoff]
    }

    {
        std::unique_lock lock(server.mu);
        server.stopping = true;
        for (auto& c : server.queue)
            server.open.remove(c.fd.get());
        server.queue.clear();  // queued clients never got a thread: close them
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
    unsigned pool = 0;
    std::size_t queue_max = 256;
    CLI::App app{"Blocking echo server: a thread per connection, or a fixed thread pool"};
    iolab::add_server_options(app, "echo-threaded", opts, iolab::kConnectionLogHelp);
    app.add_option("--pool", pool,
                   "A fixed pool of N threads instead of one thread per connection "
                   "(default: no pool)")
        ->check(CLI::Range(1u, 100000u));
    app.add_option("--queue", queue_max,
                   "With --pool: accepted connections that may wait for a thread; more are "
                   "refused")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    if (app.count("--queue") > 0 && pool == 0)
        return iolab::usage_error(app, "--queue needs --pool (connections wait only for a pool)");
    return iolab::guarded_main("echo-threaded", [&] {
        iolab::StopSignals stop;  // first: every thread inherits the blocked mask
        return run(opts, stop, pool, queue_max);
    });
}
