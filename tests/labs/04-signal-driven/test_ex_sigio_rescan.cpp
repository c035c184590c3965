// The check of the write-it-yourself exercise ex-sigio-rescan (LAB.md of lab
// 04, "Write the core yourself"): the student's on_overflow and full_scan in
// labs/04-signal-driven/ex_sigio.cpp. The server runs with --sigpending 0, so
// no realtime signal can ever be queued: every event overflows into plain
// SIGIO. The test also sends SIGIO itself every 20 ms, as the kernel does on
// an overflow, so this check does not depend on arm_async (the other
// exercise): either way, only a full scan per SIGIO serves the clients.
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "tests/support/echo_client.hpp"
#include "tests/support/ex_echo_preflight.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

TEST_CASE("ex-sigio-rescan: every client is served when only plain SIGIO ever comes",
          "[integration]") {
    ServerProcess server({bin("ex-sigio"), "--port", "0", "--sigpending", "0", "-v"});
    std::atomic<bool> done{false};
    std::thread overflow([&, pid = server.pid()] {
        while (!done.load()) {
            ::kill(pid, SIGIO);
            std::this_thread::sleep_for(20ms);
        }
    });
    std::mt19937_64 rng(17);
    std::vector<std::string> payloads;
    for (int i = 0; i < 20; ++i)
        payloads.push_back(random_payload(rng, 1 + rng() % (256 * 1024)));
    std::vector<std::future<EchoOutcome>> results;
    for (const auto& p : payloads)
        results.push_back(std::async(std::launch::async, [&, port = server.port()] {
            return echo_roundtrip(port, p, 10s);
        }));
    std::vector<EchoOutcome> outcomes;
    for (auto& r : results)
        outcomes.push_back(r.get());
    done = true;
    overflow.join();

    uint64_t total = 0;
    int failed = 0;
    std::string first;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        total += payloads[i].size();
        if (!outcomes[i].ok && failed++ == 0)
            first = "client " + std::to_string(i) + " (" + std::to_string(payloads[i].size()) +
                    " bytes): " + outcomes[i].error;
    }
    INFO(failed << " of 20 clients not echoed within 10 s; the first: " << first
                << "\n  every SIGIO must drop the queued realtime signals and scan: accept on "
                   "the listener until EAGAIN and give every connection a turn (on_overflow, "
                   "full_scan)\n  server stderr: "
                << err_tail(server));
    REQUIRE(failed == 0);
    int rc = server.stop(SIGTERM, 5s);
    REQUIRE(rc == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    CHECK(s->connections == 20);
    CHECK(s->bytes_in == total);
    CHECK(s->bytes_out == total);
    INFO(
        "the overflow's log line, 'SIGIO: the realtime signal queue overflowed; N queued "
        "event(s) dropped, scanning M connection(s)', is missing");
    CHECK(server.err().find("SIGIO: the realtime signal queue overflowed; ") != std::string::npos);
}
