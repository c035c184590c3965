// The check of the write-it-yourself exercise ex-sigio-setup (LAB.md of lab
// 04, "Write the core yourself"): the student's arm_async in
// labs/04-signal-driven/ex_sigio.cpp, run through the echo integration cases
// echo-sigio passes. A quick look comes first (a few seconds): when it fails,
// every case fails at once with what it saw, instead of waiting for the
// clients' timeouts.
#include <signal.h>

#include <catch2/catch.hpp>
#include <regex>

#include "tests/support/echo_client.hpp"
#include "tests/support/ex_echo_preflight.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

namespace {

const EchoServerSpec kSpec{"ex-sigio", {"-v"}};

// What each step of echo_preflight most likely lacks in ex_sigio.cpp.
const std::vector<std::string> kHints{
    "no signal, or a blocking call: arm_async (F_SETOWN, F_SETSIG, O_ASYNC|O_NONBLOCK added to "
    "F_GETFL's flags)",
    "stuck in a blocking read: F_SETFL without F_GETFL's flags",
    "the accepted client not armed (on_listener)",
    "no signal when room comes back: the client not armed?",
    "a reset client ended the server, or raised no signal",
    "the peer's FIN raised no signal",
    "the summary's counts, or SIGTERM not taken",
};

const std::string& preflight() {
    static const std::string verdict = echo_preflight(server_argv(kSpec), kHints);
    return verdict;
}

void require_preflight() {
    if (!preflight().empty()) FAIL("ex-sigio-setup: " << preflight());
}

}  // namespace

TEST_CASE("ex-sigio-setup: two clients, a late reader, a reset, a FIN, SIGTERM (quick look)",
          "[integration]") {
    require_preflight();
}

TEST_CASE("ex-sigio-setup: each event comes as a queued realtime signal (F_SETSIG)",
          "[integration]") {
    require_preflight();
    ServerProcess server(server_argv(kSpec));
    std::mt19937_64 rng(5);
    iolab::Fd fd = connect_local(server.port());
    for (int i = 0; i < 5; ++i) {
        EchoOutcome o = echo_over(fd.get(), random_payload(rng, 200), 3s);
        INFO("echo " << i << ": " << o.error);
        REQUIRE(o.ok);
    }
    fd.reset();
    REQUIRE(server.stop(SIGTERM, 5s) == 0);
    const std::string err = server.err();
    std::smatch m;
    const std::regex counts("signals: realtime=([0-9]+) sigio=([0-9]+)");
    INFO("stderr: " << err_tail(server));
    REQUIRE(std::regex_search(err, m, counts));
    const long realtime = std::stol(m[1]), sigio = std::stol(m[2]);
    if (realtime == 0 || sigio != 0)
        FAIL("5 echoes took realtime=" << realtime << " sigio=" << sigio
                                       << " signals — each event must come as the realtime "
                                          "signal F_SETSIG names (with si_fd), not plain SIGIO");
}

TEST_CASE("ex-sigio-setup: concurrent clients get byte-exact echoes", "[integration]") {
    require_preflight();
    check_concurrent_echo(kSpec);
}

TEST_CASE("ex-sigio-setup: a client reset mid-transfer disturbs no other", "[integration]") {
    require_preflight();
    check_reset_mid_transfer(kSpec);
}

TEST_CASE("ex-sigio-setup: SIGTERM ends it with exit 0 and an exact summary", "[integration]") {
    require_preflight();
    check_sigterm_summary(kSpec);
}

TEST_CASE("ex-sigio-setup: a reset storm is counted connect for connect", "[integration]") {
    require_preflight();
    check_reset_storm(kSpec);
}
