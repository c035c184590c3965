// Integration tests of labs/04-signal-driven (echo-sigio): the real binary,
// driven over loopback.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/socket.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

IOLAB_ECHO_FIXTURE_CASES("echo-sigio", (EchoServerSpec{"echo-sigio", {}}))

TEST_CASE("echo-sigio survives a realtime queue that always overflows (full scans)",
          "[integration]") {
    // RLIMIT_SIGPENDING 0: no realtime signal can be queued, every event
    // arrives as plain SIGIO and the server lives on full scans alone.
    EchoServerSpec spec{"echo-sigio", {"--sigpending", "0", "-v"}, false, 40, 256 * 1024};
    ServerProcess server(server_argv(spec));
    std::mt19937_64 rng(11);
    std::vector<std::string> payloads;
    for (int i = 0; i < spec.clients; ++i)
        payloads.push_back(random_payload(rng, 1 + (rng() % spec.max_payload)));
    std::vector<std::future<EchoOutcome>> results;
    for (const auto& p : payloads)
        results.push_back(std::async(std::launch::async, [&, port = server.port()] {
            return echo_roundtrip(port, p, 60s);
        }));
    uint64_t total = 0;
    for (std::size_t i = 0; i < results.size(); ++i) {
        EchoOutcome o = results[i].get();
        INFO("client " << i << ": " << o.error);
        CHECK(o.ok);
        total += payloads[i].size();
    }
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    CHECK(s->connections == static_cast<uint64_t>(spec.clients));
    CHECK(s->bytes_in == total);
    CHECK(s->bytes_out == total);
    std::string err = server.err();
    INFO("stderr tail: " << err.substr(err.size() > 2000 ? err.size() - 2000 : 0));
    CHECK(err.find("SIGIO: the realtime signal queue overflowed") != std::string::npos);
    CHECK(err.find("signals: realtime=0 ") != std::string::npos);
}

TEST_CASE("echo-sigio --udp echoes datagrams one for one", "[integration]") {
    ServerProcess server({bin("echo-sigio"), "--port", "0", "--udp"});
    CHECK(server.listening_line().rfind("listening on 127.0.0.1:", 0) == 0);
    iolab::Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(sock.valid());
    iolab::SockAddr to = iolab::SockAddr::from_numeric("127.0.0.1", server.port());
    REQUIRE(::connect(sock.get(), to.get(), to.len) == 0);
    timeval tv{10, 0};
    ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::mt19937_64 rng(21);
    uint64_t total = 0;
    std::vector<std::size_t> sizes{1, 2, 100, 1400, 9000, 65507, 0, 33333};
    for (std::size_t n : sizes) {
        std::string p = random_payload(rng, n);
        REQUIRE(::send(sock.get(), p.data(), p.size(), 0) == static_cast<ssize_t>(p.size()));
        std::string got(70000, '\0');
        ssize_t r = ::recv(sock.get(), got.data(), got.size(), 0);
        INFO("datagram of " << n << " bytes: recv " << r << " " << iolab::errno_text(errno));
        REQUIRE(r == static_cast<ssize_t>(n));
        got.resize(static_cast<std::size_t>(r));
        CHECK(got == p);
        total += n;
    }
    // A burst: several datagrams in flight at once, each echoed as itself.
    std::vector<std::string> burst;
    for (int i = 0; i < 20; ++i)
        burst.push_back(random_payload(rng, 500 + static_cast<std::size_t>(i)));
    for (const auto& p : burst)
        REQUIRE(::send(sock.get(), p.data(), p.size(), 0) == ssize_t(p.size()));
    for (const auto& p : burst) {
        std::string got(70000, '\0');
        ssize_t r = ::recv(sock.get(), got.data(), got.size(), 0);
        REQUIRE(r == static_cast<ssize_t>(p.size()));
        got.resize(static_cast<std::size_t>(r));
        CHECK(got == p);  // loopback keeps the order
        total += p.size();
    }
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    CHECK(s->connections == 0);
    CHECK(s->bytes_in == total);
    CHECK(s->bytes_out == total);
}

TEST_CASE("echo-sigio: EMFILE is survived without spinning", "[integration]") {
    auto s = check_emfile_survived({bin("echo-sigio"), "--port", "0"});
    REQUIRE(s.has_value());
    CHECK(s->refused > 0);
}

TEST_CASE("echo-sigio: bad arguments and a busy port give one line naming the problem",
          "[integration]") {
    auto r = run({bin("echo-sigio"), "--port", "70000"}, 10s);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--port") != std::string::npos);
    CHECK(r.out.empty());
    check_server_arguments("echo-sigio");
    check_max_clients({bin("echo-sigio"), "--port", "0"});
    // --max-clients means nothing for UDP: refused, not ignored.
    auto udp_max = run({bin("echo-sigio"), "--udp", "--max-clients", "5"}, 10s);
    CHECK(udp_max.exit_code == 2);
    CHECK(udp_max.err == "echo-sigio: --max-clients: UDP has no connections (--udp)\n");
    // The UDP socket of echo-sigio --udp: the same message for a taken port.
    ServerProcess udp({bin("echo-sigio"), "--udp", "--port", "0"});
    auto busy = run({bin("echo-sigio"), "--udp", "--port", std::to_string(udp.port())}, 10s);
    CHECK(busy.exit_code == 1);
    CHECK(busy.err.find("echo-sigio: bind 127.0.0.1:" + std::to_string(udp.port()) +
                        ": Address already in use") != std::string::npos);
    REQUIRE(udp.stop(SIGINT, 10s) == 0);
}
