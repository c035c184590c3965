#include "common/echo_server.hpp"

#include <optional>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "common/workers.hpp"

namespace iolab {

void add_echo_options(CLI::App& app, std::string_view program, EchoOptions& opts) {
    add_server_options(app, program, opts.server, kConnectionLogHelp);
    add_out_limit_option(app, opts.out_limit);
}

int serve_echo(const EchoOptions& opts, StopSignals& stop,
               const std::function<void(EchoLoop&)>& run) {
    // Workers listen on the one port with sockets of their own (SO_REUSEPORT):
    // the kernel hashes each connection's addresses to one of the sockets, so
    // each worker gets an even share. Sharing the first socket instead would
    // share its one accept queue, and whichever worker is awake takes most:
    // one reaches --max-clients and refuses while the others sit idle.
    const bool own_sockets = opts.workers > 1;
    Fd listener = listen_and_announce(opts.server, true, own_sockets);
    const SockAddr where = local_address(listener.get());
    // --max-clients: the clients of all the workers together (a count they
    // share, mapped before the fork).
    std::optional<SharedCount> shared_open;
    if (own_sockets) shared_open.emplace();
    return serve_with_summary(
        opts.workers, stop, Log(opts.server.verbose), [&](ServerStats& stats, unsigned worker) {
            if (worker > 0) {  // worker 0 serves the first socket
                listener.reset();
                listener = listen_tcp(where, {.reuse_port = true, .nonblocking = true});
            }
            EchoLoop loop(opts, stop, std::move(listener), stats,
                          shared_open ? &*shared_open : nullptr);
            run(loop);
            // What the kernel completed but the loop did not accept yet is
            // accepted, closed and counted (refused=): with workers, another
            // worker's backlog may hold connections older than the last one
            // served, and they would vanish from the summary with the socket.
            loop.acceptor.refuse_waiting("server stopping");
            loop.clients.close_all("server stopping");
        });
}

}  // namespace iolab
