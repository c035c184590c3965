#include "tests/support/echo_client.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"
#include "tests/support/process.hpp"

namespace iolab::test {

using namespace std::chrono_literals;

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

}  // namespace iolab::test
