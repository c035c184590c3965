// What every iolab server shares below the command line: its options, the
// "listening on" line first, the summary line last and the counters behind it. Part of the socket
// layer (no CLI11): the connection pieces in common/ count into ServerStats.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace iolab {

// What every server is told on its command line (see add_server_options).
struct ServerOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;  // 0 = a free port
    std::size_t max_clients = 10000;
    bool verbose = false;
};

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

}  // namespace iolab
