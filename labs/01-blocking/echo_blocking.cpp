// echo-blocking — the blocking I/O model, iterative: one client at a time.
//
// Usage: echo-blocking [--host 127.0.0.1] [--port 0] [-v]   (no --max-clients: one at a time)
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
#include <string>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

// Echoes one client until it closes; returns why it ended, for the log line.
std::string serve(int fd, ServerStats& stats) {
    std::array<char, 64 * 1024> buf;
    // [lab:serve]
    for (;;) {
        // read() blocks until at least one byte is in the receive buffer, the
        // peer sends FIN (returns 0), or the connection fails.
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return "eof";  // orderly close by the client (or a stop)
        if (n < 0) return "read: " + errno_text(errno);
        stats.add_in(static_cast<uint64_t>(n));
        // write() on a blocking socket returns only when every byte has been
        // copied into the send buffer — or on error. If the client does not
        // read its echo, the buffer fills and this process stops right here.
        IoResult w = write_all(fd, std::span<const char>(buf.data(), static_cast<size_t>(n)));
        stats.add_out(w.bytes);
        if (!w.ok()) return "write: " + errno_text(w.err);
    }
    // [/lab:serve]
}

class Server {
  public:
    Server(const ServerOptions& opts, StopSignals& stop)
        : stop_(stop), log_(opts.verbose), listener_(listen_and_announce(opts, false)) {}

    int run() {
        const std::string where = local_address(listener_.get()).to_string();
        OpenConnections open;
        auto watch = stop_.watch([&] {
            // shutdown() of a listening socket makes a blocked accept() fail
            // with EINVAL; shutdown() of a connection makes a blocked read()
            // return 0.
            ::shutdown(listener_.get(), SHUT_RDWR);
            open.shutdown_all();
        });
        // [lab:accept]
        while (!stop_.requested()) {
            Accepted client = accept_client(listener_.get());
            if (!client) {
                if (stop_.requested()) break;
                log_.error(sys_message("accept", where, client.err));
                if (is_resource_exhaustion(client.err)) ::usleep(100 * 1000);
                continue;
            }
            const std::string peer = client.peer.to_string();
            stats_.connections.fetch_add(1);
            log_.info("connect " + peer);
            open.add(client.fd.get());
            const std::string why = serve(client.fd.get(), stats_);
            open.remove(client.fd.get());
            log_.info("disconnect " + peer + " (" + why + ")");
        }
        // [/lab:accept]
        print_summary(stats_);
        return 0;
    }

  private:
    StopSignals& stop_;
    Log log_;
    ServerStats stats_;
    Fd listener_;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    CLI::App app{"Blocking echo server: one client at a time (iterative)"};
    iolab::add_server_options(app, "echo-blocking", opts, iolab::kConnectionLogHelp);
    app.get_option("--max-clients")
        ->description("Refused (usage error): echo-blocking serves one client at a time");
    IOLAB_PARSE(app, argc, argv);
    // One client at a time: there is never a second one to refuse. The
    // clients that wait sit in the kernel's listen backlog, not here.
    if (app.count("--max-clients") > 0)
        return iolab::usage_error(app, "--max-clients: echo-blocking serves one client at a time");
    return iolab::guarded_main("echo-blocking", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM before the watcher thread starts
        Server server(opts, stop);
        return server.run();
    });
}
