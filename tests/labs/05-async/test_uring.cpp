// echo-uring's steps (--simple .. --step 5) and the counting of echo-aio and
// echo-uring: the real binaries over loopback.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "common/socket.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

// Both ends of the lab: the simple version and the full one (the default).
IOLAB_ECHO_FIXTURE_CASES("echo-uring --simple", (EchoServerSpec{"echo-uring", {"--simple"}}))
IOLAB_ECHO_FIXTURE_CASES("echo-uring --simple --entries 8",
                         (EchoServerSpec{"echo-uring", {"--simple", "--entries", "8"}}))
// Multishot recv without batching, and a buffer ring of one buffer: most
// recvs end with ENOBUFS and must be armed again without losing a byte.
IOLAB_ECHO_FIXTURE_CASES("echo-uring --step 3", (EchoServerSpec{"echo-uring", {"--step", "3"}}))
IOLAB_ECHO_FIXTURE_CASES("echo-uring --buffers 1",
                         (EchoServerSpec{"echo-uring", {"--buffers", "1"}}))

namespace {

// The byte at position i of the stream the non-reader sends.
char pattern(std::size_t i) {
    return static_cast<char>('a' + (i * 7 + i / 4096) % 26);
}

// Sends without reading until the socket stays unwritable for a second (or
// `limit` bytes, or 60 s): how much the server took before it stopped reading.
std::size_t send_until_stalled(int fd, std::size_t limit) {
    iolab::set_nonblocking(fd, true);
    std::string chunk(64 * 1024, '\0');
    std::size_t sent = 0;
    const auto end = std::chrono::steady_clock::now() + 60s;
    while (sent < limit && std::chrono::steady_clock::now() < end) {
        for (std::size_t i = 0; i < chunk.size(); ++i)
            chunk[i] = pattern(sent + i);
        ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        REQUIRE((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, 1000) == 0) break;  // a second without room: stalled
    }
    return sent;
}

// Reads `n` bytes and checks them against the pattern.
bool read_pattern(int fd, std::size_t n) {
    iolab::set_nonblocking(fd, false);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string buf(64 * 1024, '\0');
    std::size_t have = 0;
    while (have < n) {
        ssize_t r = ::read(fd, buf.data(), std::min(buf.size(), n - have));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        for (ssize_t i = 0; i < r; ++i)
            if (buf[static_cast<std::size_t>(i)] != pattern(have + static_cast<std::size_t>(i)))
                return false;
        have += static_cast<std::size_t>(r);
    }
    return true;
}

}  // namespace

TEST_CASE("echo-uring: a client that does not read is not read either (backpressure)",
          "[integration]") {
    for (const char* step : {"1", "3", "5"}) {
        INFO("--step " << step);
        ServerProcess server({bin("echo-uring"), "--port", "0", "--step", step});
        const long rss0 = rss_kib(server.pid());
        iolab::Fd hog = connect_local(server.port());
        // 512 MiB would pass through an echo server that never stopped
        // reading; one that stops leaves it at its bound plus the socket
        // buffers of both directions (a few MiB on loopback).
        constexpr std::size_t kLimit = 512u << 20;
        const std::size_t sent = send_until_stalled(hog.get(), kLimit);
        INFO("the non-reader got " << sent << " bytes in before it stalled");
        CHECK(sent < 64u << 20);
        // Stalled, and the server holds a bounded amount for it...
        const long grown = rss_kib(server.pid()) - rss0;
        INFO("server RSS grew by " << grown << " KiB");
        CHECK(grown < 16 * 1024);
        // ...while it serves everybody else.
        std::mt19937_64 rng(7);
        EchoOutcome o = echo_roundtrip(server.port(), random_payload(rng, 100000), 10s);
        INFO(o.error);
        CHECK(o.ok);
        // Once the client reads, every byte it sent comes back, in order.
        CHECK(read_pattern(hog.get(), sent));
        hog.reset();
        REQUIRE(server.stop(SIGTERM, 15s) == 0);
        auto s = parse_summary(server.out());
        REQUIRE(s.has_value());
        CHECK(s->connections == 2);
        CHECK(s->bytes_in == sent + 100000);
        CHECK(s->bytes_out == sent + 100000);
    }
}

TEST_CASE("echo-aio, echo-uring: every connection counts, reset right after accept or not",
          "[integration]") {
    const std::vector<std::vector<std::string>> programs{
        {"echo-aio"}, {"echo-uring", "--simple"}, {"echo-uring"}};
    for (const auto& prog : programs) {
        std::vector<std::string> argv{bin(prog[0]), "--port", "0"};
        argv.insert(argv.end(), prog.begin() + 1, prog.end());
        INFO(argv[0] << (prog.size() > 1 ? " " + prog[1] : ""));
        ServerProcess server(argv);
        // 500 clients connect and reset at once (SO_LINGER 0: close sends
        // RST), most of them before the server has even accepted them.
        constexpr int kStorm = 500;
        for (int i = 0; i < kStorm; ++i) {
            iolab::Fd fd = connect_local(server.port());
            linger lg{1, 0};
            REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        }
        // One well-behaved client after them: accepted after every one of
        // them (the backlog is a queue), so once it is echoed they are in.
        std::mt19937_64 rng(3);
        EchoOutcome o = echo_roundtrip(server.port(), random_payload(rng, 1000), 10s);
        INFO(o.error);
        REQUIRE(o.ok);
        REQUIRE(server.stop(SIGTERM, 15s) == 0);
        auto s = parse_summary(server.out());
        REQUIRE(s.has_value());
        CHECK(s->connections == kStorm + 1);
        CHECK(s->refused == 0);
        CHECK(s->bytes_out == 1000);
    }
}

TEST_CASE("echo-uring: -v names the step and the setup flags it got", "[integration]") {
    ServerProcess full({bin("echo-uring"), "--port", "0", "-v"});
    REQUIRE(full.stop(SIGTERM, 10s) == 0);
    const std::string err = full.err();
    INFO(err);
    CHECK(err.find("io_uring: step 5: multishot accept, multishot recv, buffer ring 256 x "
                   "4096 B, batched submit, setup flags: ") != std::string::npos);
    // Whatever the kernel granted, the line says which (or "none").
    CHECK((err.find("DEFER_TASKRUN") != std::string::npos ||
           err.find("COOP_TASKRUN") != std::string::npos ||
           err.find("setup flags: none") != std::string::npos));

    ServerProcess simple({bin("echo-uring"), "--port", "0", "-v", "--simple"});
    REQUIRE(simple.stop(SIGTERM, 10s) == 0);
    CHECK(simple.err().find("io_uring: step 1: one-shot accept, one-shot recv, 64 KiB buffer "
                            "per client, one io_uring_enter per SQE, setup flags: none") !=
          std::string::npos);
}

TEST_CASE("echo-uring: --step, --simple and --buffers are checked", "[integration]") {
    for (const std::vector<std::string>& args : {std::vector<std::string>{"--step", "6"},
                                                 {"--simple", "--step", "3"},
                                                 {"--buffers", "3"},
                                                 {"--simple", "--buffers", "8"}}) {
        std::vector<std::string> argv{bin("echo-uring"), "--port", "0"};
        argv.insert(argv.end(), args.begin(), args.end());
        auto r = run(argv, 10s);
        INFO(args[0] << " " << args[1] << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind("echo-uring: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.out.empty());
    }
}
