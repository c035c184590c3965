// Integration tests of labs/03-multiplexing (echo-select, echo-poll,
// echo-epoll): the real binaries, driven over loopback.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/io.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"
#include "tests/labs/03-multiplexing/ex_mux_cases.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

IOLAB_ECHO_FIXTURE_CASES("echo-select", (EchoServerSpec{"echo-select", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-poll", (EchoServerSpec{"echo-poll", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-epoll", (EchoServerSpec{"echo-epoll", {}}))
IOLAB_ECHO_FIXTURE_CASES("echo-epoll --edge", (EchoServerSpec{"echo-epoll", {"--edge"}}))
IOLAB_ECHO_FIXTURE_CASES("echo-epoll --workers 2",
                         (EchoServerSpec{
                             .program = "echo-epoll", .args = {"--workers", "2"}, .listeners = 2}))

namespace {

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
    check_fd_setsize_refusal("echo-select");
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

// Two clients that send and read as fast as they can: with edge triggering a
// server that reads each one "until EAGAIN" may never get there, and a third
// client's echo waited up to a second before the read budget
// (EchoSession::kEdgeReadBudget). Not a speed test: a bound 100 times what a
// served client sees, far below what a starved one did.
TEST_CASE("echo-epoll --edge: two flooding clients do not starve a third", "[integration]") {
    ServerProcess server({bin("echo-epoll"), "--port", "0", "--edge"});
    std::atomic<bool> stop{false};
    std::vector<std::thread> flooders;
    for (int i = 0; i < 2; ++i)
        flooders.emplace_back([&stop, port = server.port()] {
            iolab::Fd fd = connect_local(port);
            std::thread reader([&stop, raw = fd.get()] {
                std::vector<char> buf(1 << 20);
                while (!stop && ::recv(raw, buf.data(), buf.size(), 0) > 0) {
                }
            });
            const std::string chunk(64 * 1024, 'f');
            while (!stop && ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0) {
            }
            ::shutdown(fd.get(), SHUT_RDWR);  // ends the reader's recv
            reader.join();
        });
    std::this_thread::sleep_for(300ms);  // the flood is on
    iolab::Fd pinger = connect_local(server.port());
    Clock::duration worst{};
    for (int i = 0; i < 100; ++i) {
        const auto t0 = Clock::now();
        REQUIRE(!iolab::write_all(pinger.get(), std::string_view("ping")).error());
        REQUIRE(read_with_timeout(pinger.get(), 4, 5s) == "ping");
        worst = std::max(worst, Clock::now() - t0);
    }
    stop = true;
    for (auto& t : flooders)
        t.join();
    INFO("slowest of 100 echoes: "
         << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count() << " ms");
    CHECK(worst < 300ms);
    CHECK(server.stop(SIGTERM, 15s) == 0);
}

TEST_CASE("backpressure: a client that never reads is held back and stalls no one",
          "[integration]") {
    for (const ServerCase& sc :
         {ServerCase{"echo-select", {}}, ServerCase{"echo-poll", {}}, ServerCase{"echo-epoll", {}},
          ServerCase{"echo-epoll", {"--edge"}}}) {
        INFO(sc.name << (sc.args.empty() ? "" : " " + sc.args[0]));
        check_backpressure(argv_of(sc));
    }
}

TEST_CASE("mux servers refuse past --max-clients and reject bad arguments", "[integration]") {
    for (const char* prog : {"echo-select", "echo-poll", "echo-epoll"}) {
        INFO(prog);
        check_max_clients({bin(prog), "--port", "0"});
        auto bad = run({bin(prog), "--out-limit", "0"}, 10s);
        CHECK(bad.exit_code == 2);
        CHECK(bad.err.find("--out-limit") != std::string::npos);
        CHECK(bad.out.empty());
        check_server_arguments(prog);
    }
    auto workers = run({bin("echo-epoll"), "--workers", "0"}, 10s);
    CHECK(workers.exit_code == 2);
    CHECK(workers.err.find("--workers") != std::string::npos);
}

namespace {

// The children of a process (Linux: /proc/PID/task/PID/children).
std::vector<pid_t> children_of(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    std::vector<pid_t> out;
    for (pid_t c; f >> c;)
        out.push_back(c);
    return out;
}

}  // namespace

TEST_CASE("echo-epoll --workers 2: two processes, one listening line, one exact summary",
          "[integration]") {
    ServerProcess server({bin("echo-epoll"), "--port", "0", "--workers", "2"});
    // "listening on" comes before the fork: give the workers a moment.
    for (int i = 0; i < 100 && children_of(server.pid()).size() < 2; ++i)
        std::this_thread::sleep_for(50ms);
    CHECK(children_of(server.pid()).size() == 2);
    // Enough connections that both workers take some (the kernel hashes each
    // to one worker's socket); every byte is counted once, in one summary.
    std::mt19937_64 rng(71);
    uint64_t total = 0;
    std::vector<std::future<EchoOutcome>> results;
    std::vector<std::string> payloads;
    for (int i = 0; i < 40; ++i)
        payloads.push_back(random_payload(rng, 1000 + static_cast<std::size_t>(i) * 997));
    for (const auto& p : payloads) {
        total += p.size();
        results.push_back(std::async(std::launch::async, [&p, port = server.port()] {
            return echo_roundtrip(port, p, 30s);
        }));
    }
    for (auto& r : results) {
        EchoOutcome o = r.get();
        INFO(o.error);
        CHECK(o.ok);
    }
    const std::vector<pid_t> kids = children_of(server.pid());
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    const std::string out = server.out();
    INFO("stdout: " << out << "stderr: " << server.err());
    CHECK(out.find("listening on ") == 0);
    CHECK(out.find("listening on ", 1) == std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') == 2);  // listening + summary
    auto s = parse_summary(out);
    REQUIRE(s.has_value());
    CHECK(s->connections == payloads.size());
    CHECK(s->bytes_in == total);
    CHECK(s->bytes_out == total);
    for (pid_t k : kids)
        CHECK(::kill(k, 0) != 0);  // no worker outlives the parent
}

namespace {

// Waits until `n` sockets listen on 127.0.0.1:port (Linux: /proc/net/tcp,
// state 0A): the workers that open sockets of their own have done so.
bool listening_sockets(uint16_t port, std::size_t n, std::chrono::milliseconds timeout) {
    char want[16];
    std::snprintf(want, sizeof want, ":%04X", port);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        std::ifstream f("/proc/net/tcp");
        std::string line;
        std::size_t found = 0;
        std::getline(f, line);  // header
        while (std::getline(f, line)) {
            std::istringstream in(line);
            std::string slot, local, remote, state;
            in >> slot >> local >> remote >> state;
            if (state == "0A" && local.size() >= 5 && local.compare(local.size() - 5, 5, want) == 0)
                ++found;
        }
        if (found >= n) return true;
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
}

// Whether `sig` waits, blocked, in the shared pending set of process `pid`.
bool signal_pending(pid_t pid, int sig) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("ShdPnd:", 0) == 0)
            return (std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1u;
    return false;
}

// Closes `fd` with a reset (SO_LINGER 0) instead of a FIN.
void reset_close(iolab::Fd& fd) {
    linger lg{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    fd.reset();
}

}  // namespace

TEST_CASE("echo-epoll --workers 2 --max-clients 5: five served at once across the workers",
          "[integration]") {
    ServerProcess server(
        {bin("echo-epoll"), "--port", "0", "--workers", "2", "--max-clients", "5"});
    const uint16_t port = server.port();
    REQUIRE(listening_sockets(port, 2, 10s));  // both workers take connections
    std::mt19937_64 rng(81);
    const std::string p = random_payload(rng, 1000);
    std::vector<iolab::Fd> served;
    for (int i = 0; i < 5; ++i) {
        served.push_back(connect_local(port));
        EchoOutcome o = echo_over(served.back().get(), p, 20s);
        INFO("client " << i << ": " << o.error);
        REQUIRE(o.ok);
    }
    // Ten more while five are served: the kernel deals them to both workers,
    // and each one is refused (a per-worker limit would admit about five).
    int refused = 0;
    for (int i = 0; i < 10; ++i) {
        iolab::Fd extra = connect_local(port);
        if (closed_by_server(extra.get(), 5s)) ++refused;
    }
    CHECK(refused == 10);
    // One leaves: its place is free for a newcomer, whichever worker gets it
    // (retried: the worker that served it may not have seen the close yet).
    served.pop_back();
    bool again = false;
    int tries = 0;
    for (; tries < 50 && !again; ++tries) {
        iolab::Fd fresh = connect_local(port);
        again = echo_over(fresh.get(), p, 5s).ok;
        if (!again) std::this_thread::sleep_for(100ms);
    }
    CHECK(again);
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    INFO("stdout: " << server.out());
    CHECK(s->connections == 6);
    CHECK(s->refused == static_cast<uint64_t>(refused + tries - 1));
}

TEST_CASE("echo-epoll --workers 2: what waits in a worker's backlog at the stop is counted",
          "[integration]") {
    iolab::raise_nofile_limit();
    ServerProcess server({bin("echo-epoll"), "--port", "0", "--workers", "2"});
    const uint16_t port = server.port();
    for (int i = 0; i < 100 && children_of(server.pid()).size() < 2; ++i)
        std::this_thread::sleep_for(50ms);
    const std::vector<pid_t> kids = children_of(server.pid());
    REQUIRE(kids.size() == 2);
    REQUIRE(listening_sockets(port, 2, 10s));
    // One worker does not run: the connections the kernel deals to its
    // socket wait in its backlog, well over one accept batch of them.
    REQUIRE(::kill(kids[1], SIGSTOP) == 0);
    constexpr int kConns = 400;
    for (int i = 0; i < kConns; ++i) {
        iolab::Fd c = connect_local(port);
        reset_close(c);
    }
    // The stop reaches the stopped worker while its backlog is still full;
    // then it runs again.
    REQUIRE(::kill(server.pid(), SIGTERM) == 0);
    const auto deadline = Clock::now() + 10s;
    while (!signal_pending(kids[1], SIGTERM) && Clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    CHECK(signal_pending(kids[1], SIGTERM));
    REQUIRE(::kill(kids[1], SIGCONT) == 0);
    REQUIRE(server.wait(15s) == 0);
    auto s = parse_summary(server.out());
    INFO("stdout: " << server.out() << "stderr: " << server.err().substr(0, 2000));
    REQUIRE(s.has_value());
    // Every connection the kernel completed before the stop is in the summary:
    // served (connections=), or accepted at the stop and closed (refused=).
    CHECK(s->connections + s->refused == static_cast<uint64_t>(kConns));
    CHECK(s->refused > 0);
}
