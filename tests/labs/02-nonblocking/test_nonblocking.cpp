// Integration tests of labs/02-nonblocking (echo-nonblocking): the real
// binary, driven over loopback.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

IOLAB_ECHO_FIXTURE_CASES("echo-nonblocking", (EchoServerSpec{"echo-nonblocking", {}}))

TEST_CASE("echo-nonblocking: a client that never reads is held back and stalls no one",
          "[integration]") {
    check_backpressure({bin("echo-nonblocking"), "--port", "0"});
}

TEST_CASE("echo-nonblocking --idle-sleep-us gives the core back when idle", "[integration]") {
    ServerProcess server({bin("echo-nonblocking"), "--port", "0", "--idle-sleep-us", "1000"});
    std::this_thread::sleep_for(200ms);
    const double cpu0 = server.cpu_seconds();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(1500ms);
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = server.cpu_seconds() - cpu0;
    INFO("idle CPU " << cpu << " s over " << elapsed << " s");
    CHECK(cpu < 0.5 * elapsed);  // a busy loop would use all of it
    // ...and still answers, a little later.
    std::mt19937_64 rng(51);
    EchoOutcome o = echo_roundtrip(server.port(), random_payload(rng, 300000), 30s);
    INFO(o.error);
    CHECK(o.ok);
    REQUIRE(server.stop(SIGINT, 15s) == 0);
}

TEST_CASE("echo-nonblocking refuses past --max-clients and rejects bad arguments",
          "[integration]") {
    check_max_clients({bin("echo-nonblocking"), "--port", "0"});
    auto bad = run({bin("echo-nonblocking"), "--out-limit", "0"}, 10s);
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("--out-limit") != std::string::npos);
    CHECK(bad.out.empty());
    check_server_arguments("echo-nonblocking");
    auto sel = run({bin("echo-nonblocking"), "--idle-sleep-us", "-5"}, 10s);
    CHECK(sel.exit_code == 2);
}
