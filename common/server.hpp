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

namespace iolab {

struct ServerOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;  // 0 = a free port
    std::size_t max_clients = 10000;
    bool verbose = false;
};

// What every server's --help ends with.
inline constexpr std::string_view kServerExitCodes =
    "Exit codes:\n"
    "  0  stopped by SIGINT or SIGTERM (after the summary line)\n"
    "  1  runtime error (the message names the call and the errno text)\n"
    "  2  usage error";

// Names the app, adds --host, --port, --max-clients, -v/--verbose and
// --version, and the exit codes above as the --help footer. `verbose_help`
// says what -v logs.
void add_server_options(
    CLI::App& app, std::string_view program, ServerOptions& opts,
    std::string_view verbose_help = "Log every connect and disconnect to stderr");

// Counters for the summary line. Atomic so that thread-per-connection servers
// can share one; relaxed increments cost nothing measurable here.
struct ServerStats {
    std::atomic<uint64_t> connections{0};  // accepted and served
    std::atomic<uint64_t> refused{0};      // accepted and closed at once (limits)
    std::atomic<uint64_t> bytes_in{0};
    std::atomic<uint64_t> bytes_out{0};

    void add_in(uint64_t n) noexcept { bytes_in.fetch_add(n, std::memory_order_relaxed); }
    void add_out(uint64_t n) noexcept { bytes_out.fetch_add(n, std::memory_order_relaxed); }
};

// Prints "listening on HOST:PORT" (the bound address, with the real port when
// 0 was asked) as the first line of stdout and flushes it.
void announce_listening(int listen_fd);

// Prints the one summary line:
//   summary: connections=12 refused=0 bytes_in=1048576 bytes_out=1048576
void print_summary(const ServerStats& stats);

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
