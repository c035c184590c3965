// Integration tests of labs/01-blocking: the real binaries, driven over loopback.
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <thread>

#include "common/socket.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

IOLAB_ECHO_FIXTURE_CASES("echo-blocking", (EchoServerSpec{"echo-blocking", {}, true, 100}))
IOLAB_ECHO_FIXTURE_CASES("echo-threaded", (EchoServerSpec{"echo-threaded", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-threaded --pool 8",
                         (EchoServerSpec{"echo-threaded", {"--pool", "8"}}))

TEST_CASE("echo-blocking serves clients in turn: the second waits for the first", "[integration]") {
    ServerProcess server({bin("echo-blocking"), "--port", "0"});
    iolab::Fd first = connect_local(server.port());
    iolab::Fd second = connect_local(server.port());  // handshake done by the kernel
    std::mt19937_64 rng(5);
    std::string p = random_payload(rng, 100);
    // The first client is served...
    REQUIRE(echo_over(first.get(), p, 10s).ok);
    // ...the second's bytes sit unread in the backlog: no echo while the first is open.
    EchoOutcome waiting = echo_over(second.get(), p, 300ms);
    CHECK_FALSE(waiting.ok);
    CHECK(waiting.received == 0);
    first.reset();  // the first leaves; the server accepts the second
    CHECK(read_with_timeout(second.get(), p.size(), 10s) == p);
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}

TEST_CASE("echo-threaded --pool: clients beyond the pool wait, then are served", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0", "--pool", "1"});
    iolab::Fd first = connect_local(server.port());
    std::mt19937_64 rng(6);
    std::string p = random_payload(rng, 64);
    REQUIRE(echo_over(first.get(), p, 10s).ok);
    iolab::Fd second = connect_local(server.port());
    EchoOutcome waiting = echo_over(second.get(), p, 300ms);
    CHECK(waiting.received == 0);  // queued: no thread free
    first.reset();
    iolab::Fd third = connect_local(server.port());
    (void)third;
    // The second now gets its (already sent) bytes back.
    CHECK(read_with_timeout(second.get(), p.size(), 10s) == p);
    REQUIRE(server.stop(SIGINT, 10s) == 0);
}

TEST_CASE("echo-threaded --max-clients refuses the extra connection and counts it",
          "[integration]") {
    check_max_clients({bin("echo-threaded"), "--port", "0"});
}

TEST_CASE("options that would do nothing are refused with one line", "[integration]") {
    auto blocking = run({bin("echo-blocking"), "--max-clients", "5"}, 10s);
    CHECK(blocking.exit_code == 2);
    CHECK(blocking.err ==
          "echo-blocking: --max-clients: echo-blocking serves one client at a time\n");
    auto queue = run({bin("echo-threaded"), "--queue", "5"}, 10s);
    CHECK(queue.exit_code == 2);
    CHECK(queue.err == "echo-threaded: --queue needs --pool (connections wait only for a pool)\n");
    auto pool0 = run({bin("echo-threaded"), "--pool", "0"}, 10s);
    CHECK(pool0.exit_code == 2);
    CHECK(pool0.err.rfind("echo-threaded: ", 0) == 0);
    CHECK(pool0.err.find("--pool") != std::string::npos);
}

TEST_CASE("servers reject bad arguments with a one-line error naming the problem",
          "[integration]") {
    for (const char* prog : {"echo-blocking", "echo-threaded"}) {
        INFO(prog);
        auto r = run({bin(prog), "--port", "70000"}, 10s);
        CHECK(r.exit_code != 0);
        CHECK(r.err.find("--port") != std::string::npos);
        CHECK(r.out.empty());

        auto h = run({bin(prog), "--host", "no.such.host.invalid", "--port", "0"}, 30s);
        CHECK(h.exit_code == 1);
        CHECK(h.err.find("no.such.host.invalid") != std::string::npos);

        check_server_arguments(prog);
    }
}

TEST_CASE("servers listen on IPv6 loopback", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--host", "::1", "--port", "0"});
    CHECK(server.host() == "::1");
    std::mt19937_64 rng(9);
    std::string p = random_payload(rng, 5000);
    EchoOutcome o = echo_roundtrip(server.port(), p, 10s, "::1");
    INFO(o.error);
    CHECK(o.ok);
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}
