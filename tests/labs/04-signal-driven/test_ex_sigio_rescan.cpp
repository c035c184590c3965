// The check of the write-it-yourself exercise ex-sigio-rescan (LAB.md of lab
// 04, "Write the core yourself"): the student's on_overflow and full_scan in
// labs/04-signal-driven/ex_sigio.cpp. The server runs with --sigpending 0, so
// no realtime signal can ever be queued: every event overflows into plain
// SIGIO. The test also sends SIGIO itself every 20 ms, as the kernel does on
// an overflow, so this check does not depend on arm_async (the other
// exercise): either way, only a full scan per SIGIO serves the clients.
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "common/error.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/ex_echo_preflight.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

namespace {

// One client: sends its parts one at a time, each only after the echo of the
// one before is back, so that the server must look at the connection again
// and again — after its first turn, only a scan brings it back.
EchoOutcome parts_roundtrip(uint16_t port, const std::vector<std::string>& parts) {
    EchoOutcome o;
    try {
        iolab::Fd fd = connect_local(port);
        timeval tv{10, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        for (std::size_t i = 0; i < parts.size(); ++i) {
            const std::string& p = parts[i];
            if (::send(fd.get(), p.data(), p.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(p.size())) {
                o.error = "part " + std::to_string(i + 1) + ": send: " + iolab::errno_text(errno);
                return o;
            }
            o.sent += p.size();
            std::string back = read_with_timeout(fd.get(), p.size(), 10s);
            o.received += back.size();
            if (back != p) {
                o.error = "part " + std::to_string(i + 1) + " of " + std::to_string(parts.size()) +
                          ": " + std::to_string(back.size()) + " of " + std::to_string(p.size()) +
                          " bytes back in 10 s";
                return o;
            }
        }
        o.ok = true;
    } catch (const std::exception& e) {
        o.error = e.what();
    }
    return o;
}

}  // namespace

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
    std::vector<std::vector<std::string>> payloads(20);
    for (auto& parts : payloads)
        for (int k = 0; k < 4; ++k)
            parts.push_back(random_payload(rng, 1 + rng() % (16 * 1024)));
    std::vector<std::future<EchoOutcome>> results;
    for (const auto& parts : payloads)
        results.push_back(std::async(std::launch::async, [&, port = server.port()] {
            return parts_roundtrip(port, parts);
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
        for (const auto& p : payloads[i])
            total += p.size();
        if (!outcomes[i].ok && failed++ == 0)
            first = "client " + std::to_string(i) + ", " + outcomes[i].error;
    }
    if (failed > 0)
        FAIL(failed << " of 20 clients not served — every SIGIO must scan: accept on "
                       "the listener, a turn for every connection (on_overflow, full_scan)\n  "
                    << first << "\n  server stderr: " << err_tail(server));
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
