#include "tests/support/echo_client.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <future>
#include <thread>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"
#include "tests/support/process.hpp"

namespace iolab::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string random_payload(std::mt19937_64& rng, std::size_t n) {
    std::string s(n, '\0');
    std::size_t i = 0;
    while (i < n) {
        uint64_t v = rng();
        for (int b = 0; b < 8 && i < n; ++b, ++i)
            s[i] = static_cast<char>(v >> (8 * b));
    }
    return s;
}

Fd connect_local(uint16_t port, const std::string& host) {
    return connect_tcp(SockAddr::from_numeric(host, port), 5s);
}

EchoOutcome echo_over(int fd, const std::string& payload, std::chrono::milliseconds timeout,
                      bool half_close) {
    EchoOutcome o;
    const std::string peer = "fd " + std::to_string(fd);
    set_nonblocking(fd, true);
    std::string got;
    got.reserve(payload.size());
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool shut = false;
    std::vector<char> buf(64 * 1024);
    bool need_eof = half_close;
    while (got.size() < payload.size() || need_eof) {
        if (half_close && !shut && o.sent == payload.size()) {
            ::shutdown(fd, SHUT_WR);
            shut = true;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            o.error = "timeout after " + std::to_string(timeout.count()) + " ms: sent " +
                      std::to_string(o.sent) + " of " + std::to_string(payload.size()) +
                      ", received " + std::to_string(got.size());
            return o;
        }
        pollfd p{fd, POLLIN, 0};
        if (o.sent < payload.size()) p.events |= POLLOUT;
        int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            o.error = sys_message("poll", peer, errno);
            return o;
        }
        if (p.revents & POLLOUT) {
            std::size_t chunk = std::min<std::size_t>(payload.size() - o.sent, 256 * 1024);
            IoResult w = write_some(fd, std::span<const char>(payload.data() + o.sent, chunk));
            o.sent += w.bytes;
            if (w.error()) {
                o.error = w.describe("write", peer);
                return o;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            IoResult r = read_some(fd, buf);
            if (r.ok()) {
                got.append(buf.data(), r.bytes);
                o.received = got.size();
                if (got.size() > payload.size()) {
                    o.error = "received more bytes than sent";
                    return o;
                }
            } else if (r.eof()) {
                if (got.size() == payload.size() && need_eof) {
                    need_eof = false;
                    break;
                }
                o.error = "server closed early: received " + std::to_string(got.size()) + " of " +
                          std::to_string(payload.size());
                return o;
            } else if (r.error()) {
                o.error = r.describe("read", peer);
                return o;
            }
        }
    }
    o.received = got.size();
    if (got != payload) {
        std::size_t i = 0;
        while (i < got.size() && got[i] == payload[i])
            ++i;
        o.error = "echo differs at byte " + std::to_string(i);
        return o;
    }
    o.ok = true;
    return o;
}

EchoOutcome echo_roundtrip(uint16_t port, const std::string& payload,
                           std::chrono::milliseconds timeout, const std::string& host) {
    try {
        Fd fd = connect_local(port, host);
        return echo_over(fd.get(), payload, timeout, /*half_close=*/true);
    } catch (const std::exception& e) {
        EchoOutcome o;
        o.error = e.what();
        return o;
    }
}

std::vector<std::string> server_argv(const EchoServerSpec& spec) {
    std::vector<std::string> argv{bin(spec.program), "--port", "0"};
    argv.insert(argv.end(), spec.args.begin(), spec.args.end());
    return argv;
}

namespace {

// Payload sizes spread log-uniformly from 1 B to max, with both ends present.
std::vector<std::size_t> payload_sizes(std::mt19937_64& rng, int n, std::size_t max) {
    std::vector<std::size_t> sizes;
    std::uniform_real_distribution<double> exp(0.0, std::log2(static_cast<double>(max)));
    for (int i = 0; i < n; ++i) {
        if (i == 0)
            sizes.push_back(1);
        else if (i == 1)
            sizes.push_back(max);
        else
            sizes.push_back(static_cast<std::size_t>(std::exp2(exp(rng))));
    }
    return sizes;
}

std::chrono::milliseconds client_timeout(const EchoServerSpec& spec) {
    return spec.serial ? 120s : 60s;
}

}  // namespace

void check_concurrent_echo(const EchoServerSpec& spec, uint64_t seed) {
    ServerProcess server(server_argv(spec));
    std::mt19937_64 rng(seed);
    auto sizes = payload_sizes(rng, spec.clients, spec.max_payload);
    std::vector<std::string> payloads;
    for (auto n : sizes)
        payloads.push_back(random_payload(rng, n));

    std::vector<std::future<EchoOutcome>> results;
    for (const auto& p : payloads)
        results.push_back(std::async(std::launch::async, [&, port = server.port()] {
            return echo_roundtrip(port, p, client_timeout(spec));
        }));
    uint64_t total = 0;
    for (std::size_t i = 0; i < results.size(); ++i) {
        EchoOutcome o = results[i].get();
        INFO(spec.program << " client " << i << " (" << payloads[i].size()
                          << " bytes): " << o.error);
        CHECK(o.ok);
        total += payloads[i].size();
    }
    REQUIRE(server.running());
    int rc = server.stop(SIGTERM, 15s);
    INFO("stderr: " << server.err());
    REQUIRE(rc == 0);
    auto summary = parse_summary(server.out());
    REQUIRE(summary.has_value());
    CHECK(summary->connections == static_cast<uint64_t>(spec.clients));
    CHECK(summary->bytes_in == total);
    CHECK(summary->bytes_out == total);
}

void check_reset_mid_transfer(const EchoServerSpec& spec) {
    ServerProcess server(server_argv(spec));
    const uint16_t port = server.port();
    std::mt19937_64 rng(7);
    const int good_clients = spec.serial ? 4 : 20;
    std::vector<std::string> payloads;
    for (int i = 0; i < good_clients; ++i)
        payloads.push_back(random_payload(rng, 300 * 1024 + i));

    // Clients that reset their connection: one after sending half of 512 KiB
    // without reading (the server is writing its echo when the RST arrives), one
    // right after connecting, one after a complete small echo.
    auto resetter = [port](int kind) {
        try {
            Fd fd = connect_local(port);
            std::mt19937_64 r(99 + static_cast<uint64_t>(kind));
            if (kind == 0) {
                std::string half = random_payload(r, 256 * 1024);
                set_nonblocking(fd.get(), true);
                write_some(fd.get(), half);
                std::this_thread::sleep_for(50ms);
            } else if (kind == 2) {
                echo_over(fd.get(), random_payload(r, 1000), 30s);
            }
            linger lg{1, 0};  // close() now sends RST instead of FIN
            ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        } catch (const std::exception&) {
            // a refused or failed connect is no part of what is checked here
        }
    };

    std::vector<std::future<EchoOutcome>> results;
    std::vector<std::thread> resetters;
    for (int k = 0; k < 3; ++k)
        resetters.emplace_back(resetter, k);
    for (const auto& p : payloads)
        results.push_back(std::async(std::launch::async, [&, port] {
            return echo_roundtrip(port, p, client_timeout(spec));
        }));
    for (int k = 0; k < 3; ++k)
        resetters.emplace_back(resetter, k);
    for (auto& t : resetters)
        t.join();
    for (std::size_t i = 0; i < results.size(); ++i) {
        EchoOutcome o = results[i].get();
        INFO(spec.program << " client " << i << ": " << o.error);
        CHECK(o.ok);
    }
    // The server is still alive and serves a newcomer.
    INFO("stderr: " << server.err());
    REQUIRE(server.running());
    std::string last = random_payload(rng, 4096);
    EchoOutcome after = echo_roundtrip(port, last, 30s);
    INFO("after the resets: " << after.error);
    CHECK(after.ok);
    int rc = server.stop(SIGTERM, 15s);
    INFO("stderr after stop: " << server.err());
    REQUIRE(rc == 0);
}

void check_sigterm_summary(const EchoServerSpec& spec) {
    ServerProcess server(server_argv(spec));
    const uint16_t port = server.port();
    std::mt19937_64 rng(3);
    std::string a = random_payload(rng, 1000), b = random_payload(rng, 70000);
    REQUIRE(echo_roundtrip(port, a, 30s).ok);
    REQUIRE(echo_roundtrip(port, b, 30s).ok);
    // One client stays connected: the server must close it on the way out.
    Fd idle = connect_local(port);
    std::string c = random_payload(rng, 123);
    EchoOutcome oc = echo_over(idle.get(), c, 30s);
    INFO("idle client's echo: " << oc.error);
    REQUIRE(oc.ok);

    int rc = server.stop(SIGTERM, 15s);
    INFO("stderr: " << server.err());
    REQUIRE(rc == 0);
    std::string out = server.out();
    INFO("stdout: " << out);
    auto summary = parse_summary(out);
    REQUIRE(summary.has_value());
    CHECK(summary->connections == 3);
    CHECK(summary->bytes_in == a.size() + b.size() + c.size());
    CHECK(summary->bytes_out == a.size() + b.size() + c.size());
    // The summary is the last line and comes after the first.
    CHECK(out.rfind("listening on ", 0) == 0);

    // The open connection was closed by the server: reading it gives EOF (or a
    // reset), never a hang.
    set_nonblocking(idle.get(), false);
    timeval tv{5, 0};
    ::setsockopt(idle.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char ch;
    ssize_t n = ::read(idle.get(), &ch, 1);
    CHECK(n <= 0);
    if (n < 0) CHECK(errno != EAGAIN);
}

void check_reset_storm(const EchoServerSpec& spec, int storm) {
    ServerProcess server(server_argv(spec));
    const uint16_t port = server.port();
    // All connect first (the kernel completes every handshake), then all
    // reset: the server finds them in its backlog already reset.
    std::vector<Fd> conns;
    conns.reserve(static_cast<std::size_t>(storm));
    for (int i = 0; i < storm; ++i)
        conns.push_back(connect_local(port));
    for (Fd& c : conns) {
        linger lg{1, 0};  // close(2) sends RST instead of FIN
        ::setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        c.reset();
    }
    // One more client, served. With one listening socket the backlog is first
    // in, first out, so by the time its echo comes back every reset one has
    // been accepted. With several (workers), this client says nothing of the
    // other backlogs: a busy worker may not have reached its own yet.
    std::mt19937_64 rng(7);
    std::string p = random_payload(rng, 1000);
    EchoOutcome o = echo_roundtrip(port, p, 30s);
    INFO("client after the storm: " << o.error);
    REQUIRE(o.ok);
    int rc = server.stop(SIGTERM, 15s);
    INFO("stdout: " << server.out() << "stderr: " << server.err().substr(0, 2000));
    REQUIRE(rc == 0);
    auto summary = parse_summary(server.out());
    REQUIRE(summary.has_value());
    if (spec.listeners == 1) {
        CHECK(summary->connections == static_cast<uint64_t>(storm) + 1);
        CHECK(summary->refused == 0);
    } else {
        // What a worker had not accepted at the stop it accepts then and
        // counts in refused=: connect for connect, whatever the scheduling.
        CHECK(summary->connections + summary->refused == static_cast<uint64_t>(storm) + 1);
        CHECK(summary->connections >= 1);
    }
    CHECK(summary->bytes_in >= p.size());
}

std::string read_with_timeout(int fd, std::size_t n, std::chrono::milliseconds timeout) {
    set_nonblocking(fd, false);
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string got(n, '\0');
    std::size_t have = 0;
    while (have < n) {
        ssize_t r = ::read(fd, got.data() + have, n - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += static_cast<std::size_t>(r);
    }
    got.resize(have);
    return got;
}

bool closed_by_server(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char c;
    ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

std::optional<Summary> check_emfile_survived(const std::vector<std::string>& argv) {
    ServerProcess server(argv, SpawnOptions{.nofile = 64});
    const uint16_t port = server.port();
    std::mt19937_64 rng(51);
    std::vector<iolab::Fd> first;
    for (int i = 0; i < 10; ++i) {
        first.push_back(connect_local(port));
        EchoOutcome o = echo_over(first.back().get(), random_payload(rng, 3000), 20s);
        INFO("first client " << i << ": " << o.error);
        REQUIRE(o.ok);
    }
    // 100 more connections than the server has descriptors for: the
    // kernel completes every handshake; accept fails with EMFILE.
    std::vector<iolab::Fd> flood;
    for (int i = 0; i < 100; ++i)
        flood.push_back(connect_local(port));
    const double cpu0 = server.cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(1500ms);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = server.cpu_seconds() - cpu0;
    std::string err = server.err();
    INFO("server CPU " << cpu << " s in " << elapsed << " s; stderr: " << err.substr(0, 800));
    REQUIRE(server.running());
    CHECK(cpu < 0.5 * elapsed);
    CHECK(err.find("Too many open files") != std::string::npos);
    // The clients being served never noticed.
    for (std::size_t i = 0; i < first.size(); ++i) {
        EchoOutcome o = echo_over(first[i].get(), random_payload(rng, 70000), 20s);
        INFO("first client " << i << " during the flood: " << o.error);
        CHECK(o.ok);
    }
    flood.clear();
    first.clear();
    // Descriptors free again: a newcomer is served (retried: the server
    // may first have to work through the backlog of closed connections).
    bool served = false;
    std::string last_error;
    for (int attempt = 0; attempt < 50 && !served; ++attempt) {
        EchoOutcome o = echo_roundtrip(port, random_payload(rng, 1000), 5s);
        served = o.ok;
        last_error = o.error;
        if (!served) std::this_thread::sleep_for(100ms);
    }
    INFO("newcomer: " << last_error);
    CHECK(served);
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    return parse_summary(server.out());
}

void check_max_clients(std::vector<std::string> argv) {
    argv.insert(argv.end(), {"--max-clients", "2"});
    ServerProcess server(argv);
    Fd a = connect_local(server.port());
    Fd b = connect_local(server.port());
    std::mt19937_64 rng(61);
    std::string p = random_payload(rng, 1000);
    REQUIRE(echo_over(a.get(), p, 20s).ok);
    REQUIRE(echo_over(b.get(), p, 20s).ok);
    Fd c = connect_local(server.port());
    CHECK(closed_by_server(c.get(), 10s));
    REQUIRE(server.stop(SIGTERM, 15s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    CHECK(s->connections == 2);
    CHECK(s->refused == 1);
}

void check_server_arguments(const std::string& program) {
    ServerProcess first({bin(program), "--port", "0"});
    auto busy = run({bin(program), "--port", std::to_string(first.port())}, 10s);
    CHECK(busy.exit_code == 1);
    CHECK(busy.err.find("bind 127.0.0.1:" + std::to_string(first.port()) +
                        ": Address already in use") != std::string::npos);
    auto v = run({bin(program), "--version"}, 10s);
    CHECK(v.exit_code == 0);
    CHECK(v.out == program + " iolab " + IOLAB_VERSION + "\n");
    auto bogus = run({bin(program), "--bogus"}, 10s);
    CHECK(bogus.exit_code == 2);
    CHECK(bogus.err.rfind(program + ": ", 0) == 0);
    CHECK(std::count(bogus.err.begin(), bogus.err.end(), '\n') == 1);
    CHECK(bogus.out.empty());
}

namespace {

// The byte at offset i of the backpressure stream: no need to keep a copy.
char stream_byte(uint64_t i) {
    return static_cast<char>((i * 2654435761u) >> 13);
}

}  // namespace

void check_backpressure(const std::vector<std::string>& argv) {
    ServerProcess server(argv);
    const uint16_t port = server.port();
    const long rss0 = rss_kib(server.pid());

    // The hog writes as fast as it can and reads nothing. A server that
    // kept reading would take everything (the cap); a bounded one stops
    // reading, the kernel buffers fill, and the hog's writes stall.
    Fd hog = connect_local(port);
    set_nonblocking(hog.get());
    constexpr uint64_t kCap = 256ull << 20;
    std::vector<char> chunk(256 * 1024);
    uint64_t sent = 0;
    auto last_progress = Clock::now();
    const auto t0 = Clock::now();
    while (sent < kCap && Clock::now() - last_progress < 700ms && Clock::now() - t0 < 20s) {
        for (std::size_t i = 0; i < chunk.size(); ++i)
            chunk[i] = stream_byte(sent + i);
        IoResult w = write_some(hog.get(), chunk);
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
        IoResult r = read_some(hog.get(), buf);
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

}  // namespace iolab::test
