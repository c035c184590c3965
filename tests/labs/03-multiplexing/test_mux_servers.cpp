// Integration tests of labs/02-nonblocking and labs/03-multiplexing: the real
// binaries, driven over loopback.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/io.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

IOLAB_ECHO_FIXTURE_CASES("echo-nonblocking", (EchoServerSpec{"echo-nonblocking", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-select", (EchoServerSpec{"echo-select", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-poll", (EchoServerSpec{"echo-poll", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-epoll", (EchoServerSpec{"echo-epoll", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-epoll --edge", (EchoServerSpec{"echo-epoll", {"--edge"}}))

namespace {

// Resident memory of a process, in KiB (VmRSS in /proc/PID/status).
long rss_kib(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

// Waits until the server has closed `fd` (EOF or a reset). false on timeout or
// if bytes arrive instead.
bool closed_by_server(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char c;
    ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// The byte at offset i of the backpressure stream: no need to keep a copy.
char stream_byte(uint64_t i) {
    return static_cast<char>((i * 2654435761u) >> 13);
}

struct ServerCase {
    const char* name;
    std::vector<std::string> args;
};

std::vector<std::string> argv_of(const ServerCase& s, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{bin(s.name), "--port", "0"};
    argv.insert(argv.end(), s.args.begin(), s.args.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

}  // namespace

TEST_CASE("echo-select refuses descriptors >= FD_SETSIZE and keeps serving", "[integration]") {
    iolab::raise_nofile_limit();  // this test holds 1,100 sockets itself
    ServerProcess server({bin("echo-select"), "--port", "0"});
    const uint16_t port = server.port();
    constexpr int kConns = 1100;
    std::vector<iolab::Fd> conns;
    conns.reserve(kConns);
    for (int i = 0; i < kConns; ++i)
        conns.push_back(connect_local(port));

    // The last connections got descriptor numbers >= 1024 in the server: each
    // is accepted and closed at once.
    int late_closed = 0;
    for (int i = kConns - 50; i < kConns; ++i)
        if (closed_by_server(conns[static_cast<std::size_t>(i)].get(), 20s)) ++late_closed;
    CHECK(late_closed == 50);

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

TEST_CASE("select poll epoll: EMFILE survived without spinning", "[integration]") {
    for (const ServerCase& sc :
         {ServerCase{"echo-select", {}}, ServerCase{"echo-poll", {}}, ServerCase{"echo-epoll", {}},
          ServerCase{"echo-epoll", {"--edge"}}}) {
        INFO(sc.name << (sc.args.empty() ? "" : " " + sc.args[0]));
        ServerProcess server(argv_of(sc), SpawnOptions{.nofile = 64});
        const uint16_t port = server.port();
        std::mt19937_64 rng(21);

        // The first clients: served.
        std::vector<iolab::Fd> first;
        for (int i = 0; i < 10; ++i) {
            first.push_back(connect_local(port));
            EchoOutcome o = echo_over(first.back().get(), random_payload(rng, 5000), 20s);
            INFO("first client " << i << ": " << o.error);
            REQUIRE(o.ok);
        }

        // The flood: 200 connections, far more than the 64 descriptors the
        // server may have. Each one the server closes is opened again, every
        // 100 ms, for 2 s.
        std::vector<iolab::Fd> flood;
        for (int i = 0; i < 200; ++i)
            flood.push_back(connect_local(port));
        const double cpu0 = server.cpu_seconds();
        const auto t0 = Clock::now();
        int reconnects = 0;
        while (Clock::now() - t0 < 2s) {
            std::this_thread::sleep_for(100ms);
            std::vector<pollfd> pf;
            for (auto& f : flood)
                pf.push_back({f.get(), POLLIN, 0});
            REQUIRE(::poll(pf.data(), pf.size(), 0) >= 0);
            for (std::size_t i = 0; i < pf.size(); ++i) {
                if (pf[i].revents == 0) continue;
                flood[i] = connect_local(port);  // the old one was closed by the server
                ++reconnects;
            }
        }
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        const double cpu = server.cpu_seconds() - cpu0;
        INFO("server CPU " << cpu << " s over " << elapsed << " s of flood, " << reconnects
                           << " reconnects; stderr: " << server.err().substr(0, 1000));
        REQUIRE(server.running());
        CHECK(cpu < 0.2 * elapsed);
        CHECK(reconnects > 0);  // the server did shed pending connections
        CHECK(server.err().find("Too many open files") != std::string::npos);

        // The first clients never noticed.
        for (std::size_t i = 0; i < first.size(); ++i) {
            EchoOutcome o = echo_over(first[i].get(), random_payload(rng, 70000), 20s);
            INFO("first client " << i << " after the flood: " << o.error);
            CHECK(o.ok);
        }
        flood.clear();
        first.clear();
        REQUIRE(server.stop(SIGTERM, 15s) == 0);
        auto s = parse_summary(server.out());
        REQUIRE(s.has_value());
        CHECK(s->refused > 0);
    }
}

TEST_CASE("echo-epoll --edge echoes payloads larger than the socket buffers", "[integration]") {
    for (const char* limit : {"262144", "4096"}) {
        INFO("--out-limit " << limit);
        ServerProcess server({bin("echo-epoll"), "--port", "0", "--edge", "--out-limit", limit});
        std::mt19937_64 rng(31);
        std::vector<std::string> payloads;
        for (std::size_t n : {std::size_t{8} << 20, std::size_t{5} << 20, std::size_t{3} << 20})
            payloads.push_back(random_payload(rng, n + 7));
        std::vector<std::future<EchoOutcome>> results;
        for (const auto& p : payloads)
            results.push_back(std::async(std::launch::async, [&p, port = server.port()] {
                return echo_roundtrip(port, p, 120s);
            }));
        for (std::size_t i = 0; i < results.size(); ++i) {
            EchoOutcome o = results[i].get();
            INFO("client " << i << " (" << payloads[i].size() << " bytes): " << o.error);
            CHECK(o.ok);
        }
        REQUIRE(server.stop(SIGTERM, 15s) == 0);
        auto s = parse_summary(server.out());
        REQUIRE(s.has_value());
        CHECK(s->bytes_in == (16u << 20) + 21);
        CHECK(s->bytes_out == s->bytes_in);
    }
}

TEST_CASE("backpressure: a client that never reads is held back and stalls no one",
          "[integration]") {
    for (const ServerCase& sc : {ServerCase{"echo-nonblocking", {}}, ServerCase{"echo-select", {}},
                                 ServerCase{"echo-poll", {}}, ServerCase{"echo-epoll", {}},
                                 ServerCase{"echo-epoll", {"--edge"}}}) {
        INFO(sc.name << (sc.args.empty() ? "" : " " + sc.args[0]));
        ServerProcess server(argv_of(sc));
        const uint16_t port = server.port();
        const long rss0 = rss_kib(server.pid());

        // The hog writes as fast as it can and reads nothing. A server that
        // kept reading would take everything (the cap); a bounded one stops
        // reading, the kernel buffers fill, and the hog's writes stall.
        iolab::Fd hog = connect_local(port);
        iolab::set_nonblocking(hog.get());
        constexpr uint64_t kCap = 256ull << 20;
        std::vector<char> chunk(256 * 1024);
        uint64_t sent = 0;
        auto last_progress = Clock::now();
        const auto t0 = Clock::now();
        while (sent < kCap && Clock::now() - last_progress < 700ms && Clock::now() - t0 < 20s) {
            for (std::size_t i = 0; i < chunk.size(); ++i)
                chunk[i] = stream_byte(sent + i);
            iolab::IoResult w = iolab::write_some(hog.get(), chunk);
            REQUIRE_FALSE(w.error());
            sent += w.bytes;
            if (w.bytes > 0) last_progress = Clock::now();
            if (w.would_block()) {
                pollfd p{hog.get(), POLLOUT, 0};
                ::poll(&p, 1, 100);
            }
        }
        INFO("the hog sent " << sent << " bytes");
        CHECK(sent < kCap / 2);  // it stalled: the server stopped reading it

        // Meanwhile another client is served as usual.
        std::mt19937_64 rng(41);
        std::string p = random_payload(rng, 1 << 20);
        EchoOutcome o = echo_roundtrip(port, p, 30s);
        INFO("other client: " << o.error);
        CHECK(o.ok);
        const long rss1 = rss_kib(server.pid());
        INFO("server RSS " << rss0 << " KiB -> " << rss1 << " KiB");
        CHECK(rss1 - rss0 < 48 * 1024);

        // The hog reads at last: every byte comes back, in order.
        uint64_t got = 0;
        bool same = true;
        std::vector<char> buf(256 * 1024);
        const auto deadline = Clock::now() + 60s;
        ::shutdown(hog.get(), SHUT_WR);
        while (got < sent && Clock::now() < deadline) {
            pollfd pr{hog.get(), POLLIN, 0};
            ::poll(&pr, 1, 200);
            iolab::IoResult r = iolab::read_some(hog.get(), buf);
            if (r.eof() || r.error()) break;
            for (std::size_t i = 0; i < r.bytes; ++i)
                same = same && buf[i] == stream_byte(got + i);
            got += r.bytes;
        }
        CHECK(got == sent);
        CHECK(same);
        CHECK(closed_by_server(hog.get(), 10s));  // then the server closes it

        REQUIRE(server.stop(SIGTERM, 15s) == 0);
        auto s = parse_summary(server.out());
        REQUIRE(s.has_value());
        CHECK(s->bytes_in == sent + p.size());
        CHECK(s->bytes_out == s->bytes_in);
    }
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

TEST_CASE("mux servers refuse past --max-clients and reject bad arguments", "[integration]") {
    for (const char* prog : {"echo-nonblocking", "echo-select", "echo-poll", "echo-epoll"}) {
        INFO(prog);
        {
            ServerProcess server({bin(prog), "--port", "0", "--max-clients", "2"});
            iolab::Fd a = connect_local(server.port());
            iolab::Fd b = connect_local(server.port());
            std::mt19937_64 rng(61);
            std::string p = random_payload(rng, 1000);
            REQUIRE(echo_over(a.get(), p, 20s).ok);
            REQUIRE(echo_over(b.get(), p, 20s).ok);
            iolab::Fd c = connect_local(server.port());
            CHECK(closed_by_server(c.get(), 10s));
            REQUIRE(server.stop(SIGTERM, 15s) == 0);
            auto s = parse_summary(server.out());
            REQUIRE(s.has_value());
            CHECK(s->connections == 2);
            CHECK(s->refused == 1);
        }
        auto bad = run({bin(prog), "--out-limit", "0"}, 10s);
        CHECK(bad.exit_code != 0);
        CHECK(bad.err.find("--out-limit") != std::string::npos);
        CHECK(bad.out.empty());

        ServerProcess first({bin(prog), "--port", "0"});
        auto busy = run({bin(prog), "--port", std::to_string(first.port())}, 10s);
        CHECK(busy.exit_code == 1);
        CHECK(busy.err.find("bind 127.0.0.1:" + std::to_string(first.port()) +
                            ": Address already in use") != std::string::npos);

        auto v = run({bin(prog), "--version"}, 10s);
        CHECK(v.exit_code == 0);
        CHECK(v.out.find("iolab ") != std::string::npos);
    }
    auto sel = run({bin("echo-nonblocking"), "--idle-sleep-us", "-5"}, 10s);
    CHECK(sel.exit_code != 0);
}
