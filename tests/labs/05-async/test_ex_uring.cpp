// The check of the write-it-yourself exercise ex-uring (LAB.md of lab 05,
// "Write the core yourself"): the student's labs/05-async/ex_uring.cpp, run
// through the same echo integration cases as echo-uring. A quick look comes
// first (a few seconds): when it fails, every case fails at once with what it
// saw, instead of waiting for the clients' timeouts.
#include <catch2/catch.hpp>

#include "tests/support/echo_client.hpp"
#include "tests/support/ex_echo_preflight.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;

namespace {

const EchoServerSpec kSpec{"ex-uring", {}};

// What each step of echo_preflight most likely lacks in ex_uring.cpp.
const std::vector<std::string> kHints{
    "submit_recv after accept, or reap taking the CQEs",
    "each CQE marked seen, each to its own client",
    "on_send: recv again once the echo is out",
    "on_send: a short send, the rest not sent again",
    "on_recv: a negative res (-ECONNRESET) taken as bytes",
    "on_recv: res 0 (the peer's FIN) not ending the client",
    "bytes counted wrong (res < 0 added?), or the stop not reaped",
};

// Runs the quick look once per process (each ctest case is its own process).
const std::string& preflight() {
    static const std::string verdict = echo_preflight(server_argv(kSpec), kHints);
    return verdict;
}

void require_preflight() {
    if (!preflight().empty()) FAIL("ex-uring: " << preflight());
}

}  // namespace

TEST_CASE("ex-uring: two clients, a late reader, a reset, a FIN, SIGTERM (quick look)",
          "[integration]") {
    require_preflight();
}

TEST_CASE("ex-uring: concurrent clients get byte-exact echoes", "[integration]") {
    require_preflight();
    check_concurrent_echo(kSpec);
}

TEST_CASE("ex-uring: a client reset mid-transfer disturbs no other", "[integration]") {
    require_preflight();
    check_reset_mid_transfer(kSpec);
}

TEST_CASE("ex-uring: SIGTERM ends it with exit 0 and an exact summary", "[integration]") {
    require_preflight();
    check_sigterm_summary(kSpec);
}

TEST_CASE("ex-uring: a reset storm is counted connect for connect", "[integration]") {
    require_preflight();
    check_reset_storm(kSpec);
}
