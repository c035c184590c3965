// Worker processes: one listening socket served by N processes, the way
// nginx or Redis-cluster nodes scale past one core and past one process's
// descriptor limit (RLIMIT_NOFILE counts per process).
//
// The parent has made the listener and printed "listening on" once. It forks
// N children; each inherits the listening socket (fork after listen: they
// share one accept queue, and the kernel wakes one of them per connection)
// and the blocked SIGINT/SIGTERM with the stop signalfd, which in a child
// reads the child's own signals. The parent only waits: on SIGINT/SIGTERM it
// sends SIGTERM to every child; each child stops its loop and writes its
// counters into a pipe; the parent adds them up exactly and prints the one
// summary line. A child that dies on its own stops the others (exit 1).
#pragma once

#include <functional>

#include "common/log.hpp"
#include "common/signals.hpp"
#include "common/stats.hpp"

namespace iolab {

// Runs `serve` (one server loop, counting into the given stats, returning at
// stop) in this process when n == 1, in n worker processes otherwise, then
// prints the one summary line. Returns the exit code: 0, or 1 when a worker
// failed.
int serve_with_summary(unsigned n, StopSignals& stop, const Log& log,
                       const std::function<void(ServerStats&)>& serve);

}  // namespace iolab
