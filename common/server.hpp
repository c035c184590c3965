// The conventions every iolab server shares:
//   --host (127.0.0.1), --port (0 = a free port), --max-clients, -v, --version;
//   the first line on stdout is exactly "listening on HOST:PORT", flushed;
//   SIGINT/SIGTERM end the server with one summary line and exit code 0.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/program.hpp"
#include "common/stats.hpp"  // ServerStats, announce_listening, print_summary

namespace iolab {

// What every server's --help ends with.
inline constexpr std::string_view kServerExitCodes =
    "Exit codes:\n"
    "  0  stopped by SIGINT or SIGTERM (after the summary line)\n"
    "  1  runtime error (the message names the call and the errno text)\n"
    "  2  usage error";

// What -v logs in the echo labs (labs 01-05), one line per event on stderr.
inline constexpr std::string_view kConnectionLogHelp =
    "Log every connection to stderr: 'connect PEER', 'disconnect PEER (REASON)', "
    "'refused PEER: REASON'";

// Names the app, adds --host, --port, --max-clients, -v/--verbose and
// --version, and the exit codes above as the --help footer. `verbose_help`
// says what -v logs.
void add_server_options(
    CLI::App& app, std::string_view program, ServerOptions& opts,
    std::string_view verbose_help = "Log every connect and disconnect to stderr");

// The start of every server: raises RLIMIT_NOFILE to its hard limit, listens
// on --host/--port (O_NONBLOCK for event loops) and prints "listening on".
// `reuse_port`: SO_REUSEPORT, so that worker processes can listen on the same
// port with sockets of their own (see workers.hpp).
Fd listen_and_announce(const ServerOptions& opts, bool nonblocking, bool reuse_port = false);

// Adds --out-limit BYTES (1 B .. 1 GiB, default 256 KiB): the bound of each
// client's output queue in the event-loop labs (see out_queue.hpp).
void add_out_limit_option(CLI::App& app, std::size_t& limit);

// Adds --workers N (1 .. 256, default 1): processes serving one port, each
// with a listening socket of its own; --max-clients holds across them (see
// workers.hpp).
void add_workers_option(CLI::App& app, unsigned& workers);

// The connections a blocking server has open, so that a stop can shut them
// down: shutdown(2) wakes a thread blocked in read() on that socket, where
// close() from another thread would not (and could hit a reused number).
class OpenConnections {
  public:
    void add(int fd);
    void remove(int fd);
    // shutdown(SHUT_RDWR) on every open connection; later add()s are shut at once.
    void shutdown_all();
    [[nodiscard]] std::size_t size() const;

  private:
    mutable std::mutex mu_;
    std::unordered_set<int> fds_;
    bool stopping_ = false;
};

}  // namespace iolab
