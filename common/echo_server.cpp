#include "common/echo_server.hpp"

#include "common/workers.hpp"

namespace iolab {

void add_echo_options(CLI::App& app, std::string_view program, EchoOptions& opts) {
    add_server_options(app, program, opts.server, kConnectionLogHelp);
    add_out_limit_option(app, opts.out_limit);
}

int serve_echo(const EchoOptions& opts, StopSignals& stop,
               const std::function<void(EchoLoop&)>& run) {
    Fd listener = listen_and_announce(opts.server, true);
    return serve_with_summary(opts.workers, stop, Log(opts.server.verbose),
                              [&](ServerStats& stats) {
                                  EchoLoop loop(opts, stop, std::move(listener), stats);
                                  run(loop);
                                  loop.clients.close_all("server stopping");
                              });
}

}  // namespace iolab
