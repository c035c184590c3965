// The main() of the readiness labs (echo-nonblocking, -select, -poll,
// -epoll) after parsing: everything but the backend, the lab's own file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string_view>

#include "common/echo_driver.hpp"
#include "common/echo_session.hpp"
#include "common/program.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"

namespace iolab {

// add_server_options plus --out-limit.
void add_echo_options(CLI::App& app, std::string_view program, EchoOptions& opts);

// Listens (non-blocking) and prints "listening on", then runs `run` on an
// EchoLoop in this process (or in opts.workers processes, see workers.hpp),
// closes the clients left and prints the one summary line. Returns the exit
// code.
int serve_echo(const EchoOptions& opts, StopSignals& stop,
               const std::function<void(EchoLoop&)>& run);

// All of main(): the options every readiness lab has (add_echo_options),
// the lab's own (`more(app, opts)`: its flags, or nothing), parsing; then the
// stop signals first (they block SIGINT and SIGTERM before any other thread or
// worker process exists), then serve_echo with an EchoDriver
// (echo_driver.hpp) over the backend make() returns. It is made in each
// worker, after the fork: an epoll instance belongs to one process.
// Exceptions end the program as guarded_main says.
template <class MoreOptions, class MakeBackend>
int echo_main(int argc, char** argv, const char* program, const char* description, MoreOptions more,
              MakeBackend make) {
    EchoOptions opts;
    CLI::App app{description};
    add_echo_options(app, program, opts);
    more(app, opts);
    IOLAB_PARSE(app, argc, argv);
    return guarded_main(program, [&] {
        StopSignals stop;
        return serve_echo(opts, stop, [&](EchoLoop& loop) {
            auto backend = make(opts);
            EchoDriver(loop, backend).run();
        });
    });
}

// For a lab with no options of its own.
inline void no_more_options(CLI::App& /*app*/, EchoOptions& /*opts*/) {}

}  // namespace iolab
