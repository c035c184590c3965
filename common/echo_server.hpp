// The main() of the event-loop labs (echo-nonblocking, -select, -poll,
// -epoll) after parsing: everything but the loop itself.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string_view>

#include "common/echo_session.hpp"
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

}  // namespace iolab
