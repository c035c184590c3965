// The integration cases of a write-it-yourself readiness server (ex-epoll,
// ex-select): the ones the reference servers pass (tests/support/
// echo_client.hpp), each after a quick look (require_basic_echo) that fails
// in seconds with the likely cause when the basics are not there yet, plus
// one the references pass without a test of their own: idle clients cost
// no CPU.
#pragma once

#include <signal.h>
#include <sys/select.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/io.hpp"
#include "common/program.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/student_server.hpp"

namespace iolab::test {

// Three clients each get 4 MiB echoed while they first hold back their reads
// (the server queues output and asks for writability, then stops asking),
// then sit idle: over 2 s the server must sleep, using under a tenth of a CPU.
inline void check_idle_cpu(const std::vector<std::string>& argv) {
    using namespace std::chrono_literals;
    ServerProcess server(argv);
    std::mt19937_64 rng(5);
    std::vector<Fd> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect_local(server.port()));
        const int fd = clients.back().get();
        const std::string p = random_payload(rng, 4 << 20);
        bool sent = false;
        std::thread writer([&] { sent = !write_all(fd, std::string_view(p)).error(); });
        std::this_thread::sleep_for(200ms);  // not reading yet: the server's queue fills
        const std::string got = read_with_timeout(fd, p.size(), 20s);
        writer.join();
        INFO("client " << i << ": " << got.size() << " of " << p.size() << " bytes echoed");
        REQUIRE(sent);
        REQUIRE(got == p);
    }
    const double cpu0 = server.cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(2s);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = server.cpu_seconds() - cpu0;
    INFO("server CPU " << cpu << " s in " << elapsed
                       << " s with 3 idle clients: a loop that never sleeps (is writability "
                          "asked for while nothing is queued?)");
    CHECK(cpu < 0.1 * elapsed);
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
}

// 1,100 connections to a select server (PROGRAM): the ones whose descriptor
// number in the server is >= FD_SETSIZE are refused at once, with a log line
// naming FD_SETSIZE; the early ones still echo; once clients leave, their
// numbers serve newcomers; the summary counts every one.
inline void check_fd_setsize_refusal(const std::string& program) {
    using namespace std::chrono_literals;
    iolab::raise_nofile_limit();  // this test holds 1,100 sockets itself
    ServerProcess server({bin(program), "--port", "0"});
    const uint16_t port = server.port();
    constexpr int kConns = 1100;
    std::vector<iolab::Fd> conns;
    conns.reserve(kConns);
    for (int i = 0; i < kConns; ++i)
        conns.push_back(connect_local(port));

    // The last connections got descriptor numbers >= 1024 in the server: each
    // is accepted and closed at once.
    // 20 s for all of them: a server that never closes them fails in 20 s.
    int late_closed = 0;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (int i = kConns - 50; i < kConns; ++i) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (closed_by_server(conns[static_cast<std::size_t>(i)].get(), std::max(left, 0ms)))
            ++late_closed;
    }
    INFO(program << " must refuse (accept and close at once) a connection whose descriptor "
                    "is >= FD_SETSIZE: watch() returns why, and the driver closes it; stderr: "
                 << server.err().substr(0, 600));
    REQUIRE(late_closed == 50);

    // The early ones still echo, the server is alive.
    std::mt19937_64 rng(11);
    for (int i : {0, 1, 2, 3, 500, 900}) {
        std::string p = random_payload(rng, 20000 + static_cast<std::size_t>(i));
        EchoOutcome o = echo_over(conns[static_cast<std::size_t>(i)].get(), p, 20s);
        INFO("client " << i << ": " << o.error);
        CHECK(o.ok);
    }
    INFO("stderr: " << server.err().substr(0, 2000));
    REQUIRE(server.running());
    CHECK(server.err().find("FD_SETSIZE") != std::string::npos);

    // Once clients leave, their (low) numbers serve newcomers again.
    conns.clear();
    std::string p = random_payload(rng, 100000);
    for (int attempt = 0; attempt < 50; ++attempt) {
        // Closing 1,100 sockets takes the server a moment to notice; a
        // newcomer that lands on a number >= 1024 meanwhile is refused.
        EchoOutcome o = echo_roundtrip(port, p, 20s);
        if (o.ok) break;
        std::this_thread::sleep_for(100ms);
        if (attempt == 49) FAIL("no newcomer served after the clients left: " << o.error);
    }
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    CHECK(s->refused >= static_cast<uint64_t>(kConns - FD_SETSIZE));
    CHECK(s->connections + s->refused >= static_cast<uint64_t>(kConns) + 1);
    CHECK(s->connections < static_cast<uint64_t>(FD_SETSIZE) + 1);
}

}  // namespace iolab::test

// The cases, each a ctest test labelled LABEL's exercise: PROGRAM is the
// binary's name, ARGS (a braced list) its extra arguments, HINTS a
// StudentHints.
#define IOLAB_STUDENT_MUX_CASES(LABEL, PROGRAM, HINTS)                                       \
    TEST_CASE(LABEL ": a client is echoed, then a second, then SIGTERM ends it",             \
              "[" PROGRAM "]") {                                                             \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
    }                                                                                        \
    TEST_CASE(LABEL ": concurrent clients get byte-exact echoes", "[" PROGRAM "]") {         \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_concurrent_echo(iolab::test::EchoServerSpec{PROGRAM, {}});        \
    }                                                                                        \
    TEST_CASE(LABEL ": a client reset mid-transfer disturbs no other", "[" PROGRAM "]") {    \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_reset_mid_transfer(iolab::test::EchoServerSpec{PROGRAM, {}});     \
    }                                                                                        \
    TEST_CASE(LABEL ": SIGTERM ends it with exit 0 and an exact summary", "[" PROGRAM "]") { \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_sigterm_summary(iolab::test::EchoServerSpec{PROGRAM, {}});        \
    }                                                                                        \
    TEST_CASE(LABEL ": a reset storm is counted connect for connect", "[" PROGRAM "]") {     \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_reset_storm(iolab::test::EchoServerSpec{PROGRAM, {}});            \
    }                                                                                        \
    TEST_CASE(LABEL ": a client that never reads is held back and stalls no one",            \
              "[" PROGRAM "]") {                                                             \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_backpressure({iolab::test::bin(PROGRAM), "--port", "0"});         \
    }                                                                                        \
    TEST_CASE(LABEL ": refuses past --max-clients", "[" PROGRAM "]") {                       \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_max_clients({iolab::test::bin(PROGRAM), "--port", "0"});          \
    }                                                                                        \
    TEST_CASE(LABEL ": idle clients cost no CPU", "[" PROGRAM "]") {                         \
        iolab::test::require_basic_echo({iolab::test::bin(PROGRAM), "--port", "0"}, HINTS);  \
        iolab::test::check_idle_cpu({iolab::test::bin(PROGRAM), "--port", "0"});             \
    }
