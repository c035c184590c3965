// echo-blocking — the blocking I/O model, iterative: one client at a time.
//
// Usage: echo-blocking [--host 127.0.0.1] [--port 0] [-v]
//
// The process makes three blocking calls and nothing else: accept(2) sleeps
// until a connection has completed its handshake, read(2) sleeps until bytes
// arrive, write(2) sleeps until the kernel has room in the socket's send
// buffer. While it serves one client, every other client that connects is
// already ESTABLISHED — the kernel finished the handshake and parked the
// connection in the listen backlog — but nobody reads its bytes: they pile up
// in that socket's receive buffer (see Recv-Q in `ss -tn`) until the current
// client leaves. That wait is the whole lesson of this program.
//
// Linux notes: SIGINT/SIGTERM are read from a signalfd by a watcher thread,
// which shuts the sockets down so that the blocked accept/read return.

#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

// Echoes one client until it closes; returns when it has gone.
void serve(int fd, const std::string& peer, ServerStats& stats, const Log& log) {
    std::array<char, 64 * 1024> buf;
    for (;;) {
        // read() blocks until at least one byte is in the receive buffer, the
        // peer sends FIN (returns 0), or the connection fails.
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return;  // orderly close by the client
        if (n < 0) {
            log.info(sys_message("read", peer, errno));
            return;
        }
        stats.add_in(static_cast<uint64_t>(n));
        // write() on a blocking socket returns only when every byte has been
        // copied into the send buffer — or on error. If the client does not
        // read its echo, the buffer fills and this process stops right here.
        IoResult w = write_all(fd, std::span<const char>(buf.data(), static_cast<size_t>(n)));
        stats.add_out(w.bytes);
        if (!w.ok()) {
            log.info(w.describe("write", peer));
            return;
        }
    }
}

int run(const ServerOptions& opts) {
    StopSignals stop;  // before any thread: blocks SIGINT/SIGTERM for all
    raise_nofile_limit();
    Fd listener = listen_tcp(opts.host, opts.port);
    announce_listening(listener.get());

    ServerStats stats;
    Log log(opts.verbose);
    OpenConnections open;
    auto watch = stop.watch([&] {
        // shutdown() of a listening socket makes a blocked accept() fail with
        // EINVAL; shutdown() of a connection makes a blocked read() return 0.
        ::shutdown(listener.get(), SHUT_RDWR);
        open.shutdown_all();
    });

    while (!stop.requested()) {
        Accepted client = accept_client(listener.get());
        if (!client) {
            if (stop.requested()) break;
            log.error(sys_message("accept", local_address(listener.get()).to_string(), client.err));
            if (is_resource_exhaustion(client.err)) ::usleep(100 * 1000);
            continue;
        }
        const std::string peer = client.peer.to_string();
        stats.connections.fetch_add(1);
        log.info("connect " + peer);
        open.add(client.fd.get());
        serve(client.fd.get(), peer, stats, log);
        open.remove(client.fd.get());
        log.info("disconnect " + peer);
    }
    print_summary(stats);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    CLI::App app{"Blocking echo server: one client at a time (iterative)"};
    iolab::add_server_options(app, "echo-blocking", opts);
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-blocking", [&] { return run(opts); });
}
