// Test support: echo clients and the integration fixture every echo server of
// the suite must pass.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "tests/support/process.hpp"

namespace iolab::test {

// Deterministic pseudo-random bytes.
std::string random_payload(std::mt19937_64& rng, std::size_t n);

struct EchoOutcome {
    bool ok = false;
    std::string error;  // what failed, with the call and errno text
    std::size_t sent = 0;
    std::size_t received = 0;
};

// Sends `payload` and reads the echo at the same time (full duplex, poll-driven,
// so a payload larger than the socket buffers cannot deadlock), then checks it
// byte for byte. With `half_close`, shuts down the write side after sending
// and expects EOF after the echo. The socket is left open otherwise.
EchoOutcome echo_over(int fd, const std::string& payload, std::chrono::milliseconds timeout,
                      bool half_close = false);

// Connects to 127.0.0.1:port (or `host`) and runs echo_over, then closes.
EchoOutcome echo_roundtrip(uint16_t port, const std::string& payload,
                           std::chrono::milliseconds timeout,
                           const std::string& host = "127.0.0.1");

// Connects with a blocking socket and a 5 s timeout; throws SysError.
Fd connect_local(uint16_t port, const std::string& host = "127.0.0.1");

// How an echo server is started for the fixture.
struct EchoServerSpec {
    std::string program;            // name in <build>/bin
    std::vector<std::string> args;  // extra arguments (after --port 0)
    bool serial = false;            // serves one client at a time (echo-blocking)
    int clients = 100;              // concurrent clients in the main check
    std::size_t max_payload = 1 << 20;
    // Listening sockets, each with a backlog of its own (echo-epoll --workers
    // N: one per worker).
    unsigned listeners = 1;
};

std::vector<std::string> server_argv(const EchoServerSpec& spec);

// The fixture's checks. Each starts its own server and REQUIREs what it sees.
void check_concurrent_echo(const EchoServerSpec& spec, uint64_t seed = 1);
void check_reset_mid_transfer(const EchoServerSpec& spec);
void check_sigterm_summary(const EchoServerSpec& spec);
// `storm` clients connect and reset (SO_LINGER 0) at once, right after the
// handshake; one more client is served, then SIGTERM: the summary counts
// every connect. One listening socket: in connections= (reset or not, an
// accepted connection counts). Several: another backlog may still hold some
// at the stop, which the server accepts and counts in refused=.
void check_reset_storm(const EchoServerSpec& spec, int storm = 200);

// Reads up to `n` bytes with a receive timeout (blocking socket); what arrived.
std::string read_with_timeout(int fd, std::size_t n, std::chrono::milliseconds timeout);
// Waits until the server has closed `fd` (EOF or a reset). false on timeout
// or if bytes arrive instead.
bool closed_by_server(int fd, std::chrono::milliseconds timeout);
// `argv` (a server with --port 0) refuses a third client past --max-clients 2
// and counts it: connections=2 refused=1.
void check_max_clients(std::vector<std::string> argv);
// `argv` (a server with --port 0) run with 64 descriptors: 10 clients served,
// then 100 more connections than it has descriptors for. It keeps running,
// uses under half a CPU meanwhile, says "Too many open files", still serves
// the first 10, serves a newcomer once the flood is gone, and exits 0 on
// SIGTERM. Returns its summary line, parsed.
std::optional<Summary> check_emfile_survived(const std::vector<std::string>& argv);
// The command-line conventions every server shares: a busy port is exit 1
// naming bind and the address; --version; --bogus is a one-line usage error.
void check_server_arguments(const std::string& program);
// A client that writes and never reads is held back (the server stops
// reading it) while another is served; then every byte comes back in order.
void check_backpressure(const std::vector<std::string>& argv);

}  // namespace iolab::test

// Defines the standard integration cases for one echo server.
//   IOLAB_ECHO_FIXTURE_CASES("echo-poll", (iolab::test::EchoServerSpec{"echo-poll"}))
#define IOLAB_ECHO_FIXTURE_CASES(LABEL, SPEC)                                                \
    TEST_CASE(LABEL ": concurrent clients get byte-exact echoes", "[integration]") {         \
        iolab::test::check_concurrent_echo(SPEC);                                            \
    }                                                                                        \
    TEST_CASE(LABEL ": a client reset mid-transfer disturbs no other", "[integration]") {    \
        iolab::test::check_reset_mid_transfer(SPEC);                                         \
    }                                                                                        \
    TEST_CASE(LABEL ": SIGTERM ends it with exit 0 and an exact summary", "[integration]") { \
        iolab::test::check_sigterm_summary(SPEC);                                            \
    }                                                                                        \
    TEST_CASE(LABEL ": a reset storm is counted connect for connect", "[integration]") {     \
        iolab::test::check_reset_storm(SPEC);                                                \
    }
