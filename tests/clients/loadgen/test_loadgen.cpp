// Integration tests of clients/loadgen: the real binary against servers in
// this process (threads) and echo-threaded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "clients/loadgen/options.hpp"
#include "clients/loadgen/report.hpp"
#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A thread-per-connection server in the test process. The handler gets each
// accepted socket (blocking) and its peer; it returns to close it.
class TestServer {
  public:
    using Handler = std::function<void(int fd, const iolab::SockAddr& peer)>;
    explicit TestServer(Handler h) : handler_(std::move(h)) {
        listener_ = iolab::listen_tcp("127.0.0.1", 0);
        port_ = iolab::local_address(listener_.get()).port();
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~TestServer() {
        stopping_ = true;
        ::shutdown(listener_.get(), SHUT_RDWR);
        acceptor_.join();
        open_.shutdown_all();
        std::lock_guard lock(mu_);
        for (auto& t : threads_)
            t.join();
    }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;
    [[nodiscard]] uint16_t port() const { return port_; }
    [[nodiscard]] std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

  private:
    void accept_loop() {
        while (!stopping_) {
            iolab::Accepted a = iolab::accept_client(listener_.get());
            if (!a) {
                if (stopping_) return;
                continue;
            }
            int fd = a.fd.release();
            open_.add(fd);
            std::lock_guard lock(mu_);
            threads_.emplace_back([this, fd, peer = a.peer] {
                handler_(fd, peer);
                open_.remove(fd);
                ::close(fd);
            });
        }
    }
    Handler handler_;
    iolab::Fd listener_;
    uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
    iolab::OpenConnections open_;
    std::mutex mu_;
    std::vector<std::thread> threads_;
};

// Reads until `delim` is in the buffer; returns the text up to and with it.
bool read_until(int fd, std::string& buf, const std::string& delim, std::string& out) {
    for (;;) {
        auto pos = buf.find(delim);
        if (pos != std::string::npos) {
            out = buf.substr(0, pos + delim.size());
            buf.erase(0, pos + delim.size());
            return true;
        }
        if (buf.size() > 1 << 16) return false;
        char tmp[4096];
        ssize_t n = ::read(fd, tmp, sizeof tmp);
        if (n <= 0) return false;
        buf.append(tmp, static_cast<std::size_t>(n));
    }
}

bool send_all(int fd, const std::string& s) {
    return iolab::write_all(fd, std::span<const char>(s.data(), s.size())).ok();
}

// HTTP/1.1 keep-alive responder: /cl answers with Content-Length, /chunked
// with a chunked body in several writes, /close with Connection: close,
// /missing with 404.
void http_handler(int fd, const iolab::SockAddr&) {
    std::string buf, req;
    while (read_until(fd, buf, "\r\n\r\n", req)) {
        std::string path = req.substr(4, req.find(' ', 4) - 4);
        if (path == "/cl") {
            if (!send_all(fd,
                          "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Test: a\r\n\r\nhello world"))
                return;
        } else if (path == "/chunked") {
            if (!send_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"))
                return;
            std::this_thread::sleep_for(1ms);  // the body arrives in pieces
            if (!send_all(fd, "lo\r\n6;ext=1\r\n world\r\n0\r\n\r\n")) return;
        } else if (path == "/close") {
            send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            return;
        } else {
            if (!send_all(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")) return;
        }
    }
}

// Redis-like: "PING\r\n" -> "+PONG\r\n".
void ping_handler(int fd, const iolab::SockAddr&) {
    std::string buf, line;
    while (read_until(fd, buf, "\n", line))
        if (!send_all(fd, line == "PING\r\n" ? "+PONG\r\n" : "-ERR\r\n")) return;
}

json read_json(const std::string& path) {
    std::ifstream f(path);
    REQUIRE(f);
    json j;
    f >> j;
    return j;
}

RunResult run_loadgen(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
    args.insert(args.begin(), bin("loadgen"));
    args.push_back("-q");
    RunResult r = run(args, timeout);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    return r;
}

uint64_t error_count(const json& j, const std::string& kind, int code) {
    for (const auto& e : j["errors"])
        if (e["kind"] == kind && e["code"] == code) return e["count"].get<uint64_t>();
    return 0;
}

}  // namespace

TEST_CASE("loadgen echo: -n requests, every byte verified", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    RunResult r =
        run_loadgen({"127.0.0.1:" + std::to_string(server.port()), "-c", "8", "--threads", "2",
                     "-n", "3000", "--size", "1000", "--verify", "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("Requests/sec:") != std::string::npos);
    CHECK(r.out.find("Errors: 0") != std::string::npos);
    json j = read_json(tmp.file("r.json"));
    CHECK(j["requests"] == 3000);
    CHECK(j["bytes_out"] == 3000 * 1000);
    CHECK(j["bytes_in"] == 3000 * 1000);
    CHECK(j["errors_total"] == 0);
    CHECK(j["connects"] == 8);
    CHECK(j["latency_us"]["count"] == 3000);
    CHECK(j["latency_us"]["p50"].get<double>() > 0);
    CHECK(j["latency_us"]["p50"].get<double>() <= j["latency_us"]["p99"].get<double>());
    CHECK(j["latency_us"]["p99"].get<double>() <= j["latency_us"]["max"].get<double>());
    CHECK(j["connect_us"]["count"] == 8);
    CHECK(!j["all_up_s"].is_null());
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s);
    CHECK(s->bytes_in == 3000 * 1000);  // the server saw exactly what loadgen counted
}

TEST_CASE("loadgen echo: large requests that fill the socket buffers", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    RunResult r = run_loadgen({"127.0.0.1:" + std::to_string(server.port()), "-c", "4", "--threads",
                               "1", "-n", "40", "--size", "1048576", "--verify"});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find(" 40 requests in") != std::string::npos);
}

TEST_CASE("loadgen echo --verify catches a server that alters bytes", "[integration]") {
    TestServer server([](int fd, const iolab::SockAddr&) {
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) return;
            buf[0] ^= 0x20;  // one flipped bit per read
            if (!iolab::write_all(fd, std::span<const char>(buf, static_cast<std::size_t>(n))).ok())
                return;
        }
    });
    TempDir tmp("loadgen-test");
    RunResult r = run_loadgen({server.addr(), "-c", "2", "--threads", "1", "-n", "10", "--verify",
                               "--timeout", "5", "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    json j = read_json(tmp.file("r.json"));
    CHECK(error_count(j, "verify", 0) >= 2);
    CHECK(r.out.find("verify") != std::string::npos);
}

TEST_CASE("loadgen http: Content-Length and chunked bodies, keep-alive, status codes",
          "[integration]") {
    TestServer server(http_handler);
    TempDir tmp("loadgen-test");
    const std::string base = "http://" + server.addr();
    RunResult r =
        run_loadgen({"--mode", "http", "--url", base + "/cl", "--url", base + "/chunked", "-c", "4",
                     "--threads", "2", "-n", "400", "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json j = read_json(tmp.file("r.json"));
    CHECK(j["requests"] == 400);
    CHECK(j["status_codes"]["200"] == 400);
    CHECK(j["connects"] == 4);  // kept alive: no reconnect
    CHECK(j["reconnects"] == 0);
    // each response: a fixed head plus the body, Content-Length and chunked alternating
    CHECK(j["bytes_in"].get<uint64_t>() > 400 * 11);
}

TEST_CASE("loadgen http: Connection: close is followed, 404 counts as a failed request",
          "[integration]") {
    TestServer server(http_handler);
    TempDir tmp("loadgen-test");
    const std::string base = "http://" + server.addr();
    RunResult closing = run_loadgen({"--mode", "http", "--url", base + "/close", "-c", "2",
                                     "--threads", "1", "-n", "50", "--json", tmp.file("c.json")});
    INFO(closing.out << closing.err);
    REQUIRE(closing.exit_code == 0);
    json c = read_json(tmp.file("c.json"));
    CHECK(c["requests"] == 50);
    CHECK(c["reconnects"].get<uint64_t>() >= 48);
    CHECK(c["errors_total"] == 0);

    RunResult missing = run_loadgen({"--mode", "http", "--url", base + "/missing", "-c", "1",
                                     "--threads", "1", "-n", "5", "--json", tmp.file("m.json")});
    INFO(missing.out << missing.err);
    CHECK(missing.exit_code == 1);
    json m = read_json(tmp.file("m.json"));
    CHECK(m["status_codes"]["404"] == 5);
    CHECK(error_count(m, "status", 404) == 5);
    RunResult allowed = run_loadgen({"--mode", "http", "--url", base + "/missing", "-c", "1",
                                     "--threads", "1", "-n", "5", "--allow-errors"});
    CHECK(allowed.exit_code == 0);
}

TEST_CASE("loadgen raw: Redis-style PING with --expect-line and --expect-bytes", "[integration]") {
    TestServer server(ping_handler);
    TempDir tmp("loadgen-test");
    RunResult line =
        run_loadgen({"--mode", "raw", server.addr(), "--send", "PING\\r\\n", "--expect-line", "-c",
                     "3", "--threads", "1", "-n", "300", "--json", tmp.file("l.json")});
    INFO(line.out << line.err);
    REQUIRE(line.exit_code == 0);
    json l = read_json(tmp.file("l.json"));
    CHECK(l["requests"] == 300);
    CHECK(l["bytes_in"] == 300 * 7);
    CHECK(l["bytes_out"] == 300 * 6);

    RunResult bytes =
        run_loadgen({"--mode", "raw", server.addr(), "--send", "PING\\r\\n", "--expect-bytes", "7",
                     "-c", "2", "--threads", "2", "-n", "100"});
    INFO(bytes.out << bytes.err);
    REQUIRE(bytes.exit_code == 0);
    CHECK(bytes.out.find(" 100 requests in") != std::string::npos);

    // The wrong expectation: 5 bytes expected, 7 come: bytes nobody asked for.
    RunResult wrong =
        run_loadgen({"--mode", "raw", server.addr(), "--send", "PING\\r\\n", "--expect-bytes", "5",
                     "-c", "1", "--threads", "1", "-n", "3", "--json", tmp.file("w.json")});
    CHECK(wrong.exit_code == 1);
    CHECK(error_count(read_json(tmp.file("w.json")), "protocol", 0) >= 1);
}

TEST_CASE("loadgen idle --active: most connections hold still, a few run echo", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    RunResult r =
        run_loadgen({"--mode", "idle", "127.0.0.1:" + std::to_string(server.port()), "-c", "40",
                     "--active", "4", "--threads", "2", "-d", "1", "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json j = read_json(tmp.file("r.json"));
    CHECK(j["connects"] == 40);
    CHECK(j["max_open"] == 40);
    CHECK(j["requests"].get<uint64_t>() > 10);
    CHECK(j["active"] == 4);
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s);
    CHECK(s->connections == 40);
    CHECK(s->bytes_in == j["bytes_out"].get<uint64_t>());
}

TEST_CASE("loadgen idle -n: a worker with only idle connections ends with the others",
          "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    // One active connection: the second worker has none and must not wait forever.
    // 2000 round trips on the one connection (tens of ms) leave the idle
    // connections time to come up, even on a busy machine (with 100, the run
    // once ended while one was still connecting).
    RunResult r =
        run_loadgen({"--mode", "idle", "127.0.0.1:" + std::to_string(server.port()), "-c", "10",
                     "--active", "1", "--threads", "2", "-n", "2000", "--json", tmp.file("r.json")},
                    30s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json j = read_json(tmp.file("r.json"));
    CHECK(j["requests"] == 2000);
    CHECK(j["connects"] == 10);
}

TEST_CASE("loadgen classifies errors: refused, reset, timeout", "[integration]") {
    TempDir tmp("loadgen-test");
    SECTION("refused") {
        uint16_t port = 0;
        {
            iolab::Fd l = iolab::listen_tcp("127.0.0.1", 0);
            port = iolab::local_address(l.get()).port();
        }  // closed: nothing listens there now
        RunResult r = run_loadgen({"127.0.0.1:" + std::to_string(port), "-c", "3", "--threads", "1",
                                   "-d", "2", "--json", tmp.file("r.json")});
        INFO(r.out << r.err);
        CHECK(r.exit_code == 1);
        json j = read_json(tmp.file("r.json"));
        CHECK(error_count(j, "connect", ECONNREFUSED) == 3);
        CHECK(j["connect_failures"] == 3);
        CHECK(r.out.find("Connection refused") != std::string::npos);
    }
    SECTION("reset") {
        // Reads the request, then closes with SO_LINGER 0: an RST instead of a FIN.
        TestServer server([](int fd, const iolab::SockAddr&) {
            char buf[64];
            if (::read(fd, buf, sizeof buf) <= 0) return;
            linger lg{1, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        });
        RunResult r = run_loadgen(
            {server.addr(), "-c", "2", "--threads", "1", "-n", "4", "--json", tmp.file("r.json")});
        INFO(r.out << r.err);
        CHECK(r.exit_code == 1);
        json j = read_json(tmp.file("r.json"));
        CHECK(error_count(j, "read", ECONNRESET) == 4);
        CHECK(j["requests"] == 0);
        CHECK(r.out.find("Connection reset by peer") != std::string::npos);
    }
    SECTION("timeout") {
        // Accepts and reads, never answers.
        TestServer server([](int fd, const iolab::SockAddr&) {
            char buf[64];
            while (::read(fd, buf, sizeof buf) > 0) {
            }
        });
        RunResult r = run_loadgen({server.addr(), "-c", "2", "--threads", "1", "-n", "2",
                                   "--timeout", "0.3", "--json", tmp.file("r.json")});
        INFO(r.out << r.err);
        CHECK(r.exit_code == 1);
        json j = read_json(tmp.file("r.json"));
        CHECK(error_count(j, "timeout", 0) == 2);
        CHECK(j["duration_s"].get<double>() >= 0.29);
    }
}

TEST_CASE("loadgen --rate holds its target within 5 %", "[integration]") {
    // 3 s counted after a 1 s warm-up, so that a slow start on a loaded machine
    // (connections joining the schedule late) does not count against the rate.
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    RunResult r =
        run_loadgen({"127.0.0.1:" + std::to_string(server.port()), "-c", "20", "--threads", "2",
                     "-d", "4", "--warmup", "1", "--rate", "2000", "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json j = read_json(tmp.file("r.json"));
    const double rps = j["requests_per_s"].get<double>();
    CHECK(rps == Approx(2000).epsilon(0.05));
    CHECK(j["open_loop"] == true);
    CHECK(j["duration_s"].get<double>() == Approx(3.0).epsilon(0.02));
    // corrected latency is never below the uncorrected one
    CHECK(j["latency_us"]["p50"].get<double>() >= j["latency_uncorrected_us"]["p50"].get<double>());
    CHECK(r.out.find("Uncorrected") != std::string::npos);
}

TEST_CASE("loadgen --json shape, and merge adds runs exactly", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    const std::string target = "127.0.0.1:" + std::to_string(server.port());
    REQUIRE(run_loadgen(
                {target, "-c", "2", "--threads", "1", "-n", "500", "--json", tmp.file("a.json")})
                .exit_code == 0);
    REQUIRE(run_loadgen({target, "-c", "3", "--threads", "1", "-n", "700", "--size", "10", "--json",
                         tmp.file("b.json")})
                .exit_code == 0);
    json a = read_json(tmp.file("a.json")), b = read_json(tmp.file("b.json"));
    for (const char* key : {"tool",
                            "format",
                            "mode",
                            "targets",
                            "threads",
                            "connections",
                            "open_loop",
                            "rate",
                            "duration_s",
                            "requests",
                            "requests_per_s",
                            "bytes_in",
                            "bytes_out",
                            "mb_in_per_s",
                            "mb_out_per_s",
                            "connects",
                            "connect_failures",
                            "reconnects",
                            "max_open",
                            "all_up_s",
                            "latency_us",
                            "latency_uncorrected_us",
                            "connect_us",
                            "errors_total",
                            "errors",
                            "status_codes",
                            "histograms"}) {
        INFO(key);
        CHECK(a.contains(key));
    }
    for (const char* key :
         {"count", "avg", "stdev", "min", "p50", "p90", "p99", "p99_9", "p99_99", "max"})
        CHECK(a["latency_us"].contains(key));
    CHECK(a["histograms"]["latency"]["unit"] == "ns");
    CHECK(a["histograms"]["latency"]["count"] == 500);

    RunResult m = run({bin("loadgen"), "merge", tmp.file("a.json"), tmp.file("b.json"), "--json",
                       tmp.file("m.json")},
                      30s);
    INFO(m.out << m.err);
    REQUIRE(m.exit_code == 0);
    CHECK(m.out.find("2 runs merged") != std::string::npos);
    json mj = read_json(tmp.file("m.json"));
    CHECK(mj["requests"] == 1200);
    CHECK(mj["runs"] == 2);
    CHECK(mj["connections"] == 5);
    CHECK(mj["bytes_out"] == 500 * 64 + 700 * 10);
    CHECK(mj["requests_per_s"].get<double>() ==
          Approx(a["requests_per_s"].get<double>() + b["requests_per_s"].get<double>()));
    // The merged histogram is exactly the sum of the two.
    iolab::Histogram ha = loadgen::histogram_from_json(a["histograms"]["latency"]);
    iolab::Histogram hb = loadgen::histogram_from_json(b["histograms"]["latency"]);
    iolab::Histogram hm = loadgen::histogram_from_json(mj["histograms"]["latency"]);
    ha.merge(hb);
    CHECK(hm.counts() == ha.counts());
    CHECK(hm.max() == ha.max());
    CHECK(hm.sum() == ha.sum());
    CHECK(mj["latency_us"]["p99"].get<double>() ==
          Approx(static_cast<double>(ha.percentile(99)) / 1e3));

    // A file that is not a report is refused with its name.
    std::ofstream(tmp.file("bad.json")) << "{\"tool\": \"wrk\"}";
    RunResult bad = run({bin("loadgen"), "merge", tmp.file("a.json"), tmp.file("bad.json")}, 30s);
    CHECK(bad.exit_code != 0);
    CHECK(bad.err.find("bad.json") != std::string::npos);
}

TEST_CASE("loadgen --source-addrs spreads connections over local addresses", "[integration]") {
    std::mutex mu;
    std::set<std::string> peers;
    TestServer server([&](int fd, const iolab::SockAddr& peer) {
        {
            std::lock_guard lock(mu);
            peers.insert(peer.host());
        }
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) return;
            if (!iolab::write_all(fd, std::span<const char>(buf, static_cast<std::size_t>(n))).ok())
                return;
        }
    });
    RunResult r = run_loadgen({server.addr(), "-c", "8", "--threads", "2", "-n", "80",
                               "--source-addrs", "127.0.0.2-127.0.0.4,127.0.0.9"});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    std::lock_guard lock(mu);
    CHECK(peers == std::set<std::string>{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"});
}

TEST_CASE("loadgen preflight refuses what the descriptor limit rules out", "[integration]") {
    SpawnOptions opts;
    opts.nofile = 256;
    RunResult r = run({bin("loadgen"), "127.0.0.1:9", "-c", "1000", "-d", "1"}, 30s, opts);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("preflight:") != std::string::npos);
    CHECK(r.err.find("RLIMIT_NOFILE 256 < 1") != std::string::npos);
}

TEST_CASE("loadgen option helpers", "[unit]") {
    CHECK(loadgen::unescape("PING\\r\\n") == "PING\r\n");
    CHECK(loadgen::unescape("a\\tb\\\\c\\x41\\0") == std::string("a\tb\\cA\0", 7));
    CHECK_THROWS_AS(loadgen::unescape("bad\\q"), std::invalid_argument);
    CHECK_THROWS_AS(loadgen::unescape("cut\\x4"), std::invalid_argument);
    CHECK_THROWS_AS(loadgen::unescape("end\\"), std::invalid_argument);
    auto s = loadgen::parse_source_addrs("127.0.0.2-127.0.0.20");
    REQUIRE(s.size() == 19);
    CHECK(s.front().host() == "127.0.0.2");
    CHECK(s.back().host() == "127.0.0.20");
    CHECK(loadgen::parse_source_addrs("127.0.0.5,::1").size() == 2);
    CHECK_THROWS_AS(loadgen::parse_source_addrs("127.0.0.9-127.0.0.2"), std::invalid_argument);
    CHECK_THROWS_AS(loadgen::parse_source_addrs("nonsense"), std::invalid_argument);
    CHECK_THROWS_AS(loadgen::parse_source_addrs("127.0.0.1,"), std::invalid_argument);

    loadgen::Options o;
    o.target = "127.0.0.1:7000";
    o.threads = 8;
    o.connections = 3;
    loadgen::Options r = o;
    loadgen::resolve(r);
    CHECK(r.threads == 3);  // never more workers than connections
    CHECK(r.duration_s == 10);
    CHECK(r.target_names == std::vector<std::string>{"127.0.0.1:7000"});
    o.mode = loadgen::Mode::raw;
    r = o;
    CHECK_THROWS_AS(loadgen::resolve(r), std::invalid_argument);  // no --send
    o.send = "PING\\r\\n";
    o.expect_line = true;
    r = o;
    loadgen::resolve(r);
    CHECK(r.targets[0].requests[0] == "PING\r\n");
    o.mode = loadgen::Mode::echo;
    r = o;
    CHECK_THROWS_AS(loadgen::resolve(r), std::invalid_argument);  // --send is raw only
}

TEST_CASE("loadgen backs off before reopening connections the server closes", "[integration]") {
    // Accepts and closes at once, as a server at its descriptor limit does.
    TestServer server([](int, const iolab::SockAddr&) {});
    TempDir tmp("loadgen-test");
    RunResult r = run_loadgen({"--mode", "idle", server.addr(), "-c", "10", "--threads", "1", "-d",
                               "2", "--allow-errors", "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json j = read_json(tmp.file("r.json"));
    // Waits of 10, 20, 40, ... ms: 7 reopens per connection in 2 s (the old
    // fixed 100 ms gave 19, none at all thousands).
    const auto reopens = j["reconnects"].get<uint64_t>();
    CHECK(reopens >= 10 * 2);
    CHECK(reopens <= 10 * 9);
    CHECK(error_count(j, "closed", 0) == j["connects"].get<uint64_t>());

    // A reply is a success: the back-off starts over at 10 ms each time.
    TestServer one_reply([](int fd, const iolab::SockAddr&) {
        char buf[64];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) iolab::write_all(fd, std::span<const char>(buf, static_cast<std::size_t>(n)));
    });
    RunResult e = run_loadgen({one_reply.addr(), "-c", "2", "--threads", "1", "-d", "2", "--size",
                               "8", "--allow-errors", "--json", tmp.file("e.json")});
    INFO(e.out << e.err);
    REQUIRE(e.exit_code == 0);
    json ej = read_json(tmp.file("e.json"));
    // Without the reset: at most 8 reopens per connection in 2 s, so at most
    // 18 replies; with it, one every 10 ms or so (about 26 per connection and
    // second even under ASan on a loaded machine).
    CHECK(ej["requests"].get<uint64_t>() >= 2 * 25);
    CHECK(ej["reconnects"].get<uint64_t>() >= 2 * 25);
}

namespace {

double unix_now() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// An echo handler that notes each peer and the wall-clock time of each accept.
struct EchoRecorder {
    std::mutex mu;
    std::vector<double> accepted_at;
    std::set<std::string> peers;
    TestServer::Handler handler() {
        return [this](int fd, const iolab::SockAddr& peer) {
            {
                std::lock_guard lock(mu);
                accepted_at.push_back(unix_now());
                peers.insert(peer.host());
            }
            char buf[4096];
            for (;;) {
                ssize_t n = ::read(fd, buf, sizeof buf);
                if (n <= 0) return;
                if (!iolab::write_all(fd, std::span<const char>(buf, static_cast<std::size_t>(n)))
                         .ok())
                    return;
            }
        };
    }
};

}  // namespace

TEST_CASE("loadgen --start-at starts within 10 ms of the instant", "[integration]") {
    EchoRecorder rec;
    TestServer server(rec.handler());
    TempDir tmp("loadgen-test");
    const double instant = unix_now() + 1.0;
    char text[64];
    std::snprintf(text, sizeof text, "%.6f", instant);
    RunResult r = run_loadgen({server.addr(), "-c", "4", "--threads", "2", "-d", "1", "--start-at",
                               text, "--json", tmp.file("r.json")});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    std::lock_guard lock(rec.mu);
    REQUIRE(rec.accepted_at.size() == 4);
    const double first = *std::min_element(rec.accepted_at.begin(), rec.accepted_at.end());
    // Never before the instant; within 10 ms after it (the accept, on this side,
    // comes a little after loadgen's connect).
    CHECK(first >= instant - 0.001);
    CHECK(first <= instant + 0.010);
    // The measured window is the asked duration from the instant on.
    json j = read_json(tmp.file("r.json"));
    CHECK(j["duration_s"].get<double>() == Approx(1.0).epsilon(0.05));

    RunResult bad = run({bin("loadgen"), server.addr(), "--start-at", "tomorrow"}, 10s);
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("--start-at") != std::string::npos);
}

TEST_CASE("loadgen --processes forks loadgens over the source addresses and merges",
          "[integration]") {
    EchoRecorder rec;
    TestServer server(rec.handler());
    TempDir tmp("loadgen-test");
    RunResult r =
        run_loadgen({server.addr(), "--processes", "3", "-c", "7", "-n", "900", "--source-addrs",
                     "127.0.0.2-127.0.0.4", "--json", tmp.file("r.json")},
                    60s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("3 runs merged") != std::string::npos);
    json j = read_json(tmp.file("r.json"));
    CHECK(j["runs"] == 3);
    CHECK(j["connections"] == 7);
    CHECK(j["threads"] == 3);
    CHECK(j["requests"] == 900);
    CHECK(j["latency_us"]["count"] == 900);
    CHECK(j["connects"] == 7);
    std::lock_guard lock(rec.mu);
    CHECK(rec.peers == std::set<std::string>{"127.0.0.2", "127.0.0.3", "127.0.0.4"});
    // Their connections all came up together, at the common start.
    const auto [lo, hi] = std::minmax_element(rec.accepted_at.begin(), rec.accepted_at.end());
    CHECK(*hi - *lo < 0.5);
}

namespace {

// The rows of an .hgrm file: value, percentile (0..1), total count.
struct HgrmRow {
    double value = 0, percentile = 0;
    uint64_t count = 0;
};
struct Hgrm {
    std::vector<HgrmRow> rows;
    double mean = -1, max = -1;
    uint64_t total = 0;
    bool header = false, buckets_line = false;
};
Hgrm parse_hgrm(const std::string& path) {
    std::ifstream f(path);
    REQUIRE(f);
    Hgrm h;
    std::string line;
    while (std::getline(f, line)) {
        if (line.empty()) continue;
        if (line.find("Value") != std::string::npos &&
            line.find("1/(1-Percentile)") != std::string::npos) {
            h.header = true;
        } else if (line.rfind("#[Mean", 0) == 0) {
            REQUIRE(std::sscanf(line.c_str(), "#[Mean = %lf", &h.mean) == 1);
        } else if (line.rfind("#[Max", 0) == 0) {
            unsigned long long n = 0;
            REQUIRE(std::sscanf(line.c_str(), "#[Max = %lf, Total count = %llu", &h.max, &n) == 2);
            h.total = n;
        } else if (line.rfind("#[Buckets", 0) == 0) {
            h.buckets_line = true;
        } else {
            HgrmRow r;
            unsigned long long n = 0;
            INFO(line);
            REQUIRE(std::sscanf(line.c_str(), "%lf %lf %llu", &r.value, &r.percentile, &n) == 3);
            r.count = n;
            h.rows.push_back(r);
        }
    }
    return h;
}

}  // namespace

TEST_CASE("loadgen reports its own and the server's cost with both wait policies",
          "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    const std::string target = "127.0.0.1:" + std::to_string(server.port());
    const std::string pid = std::to_string(server.pid());
    // One connection: every request is a round trip. With --busy-poll 0 the
    // client sleeps whenever the echo is not back yet (how often depends on
    // where the scheduler puts the two: not asserted); with a 100 ms spin,
    // far longer than any echo takes, it looks until the echo is there and
    // does not go to sleep (being preempted is an involuntary switch).
    std::map<std::string, json> reports;
    for (const std::string bp : {"0", "100000"}) {
        const std::string file = tmp.file("bp" + bp + ".json");
        RunResult r = run_loadgen({target, "-c", "1", "--threads", "1", "-n", "20000",
                                   "--busy-poll", bp, "--server-pid", pid, "--json", file});
        REQUIRE(r.exit_code == 0);
        CHECK(r.out.find("Client: ") != std::string::npos);
        CHECK(r.out.find("Server pid " + pid + ": ") != std::string::npos);
        json j = read_json(file);
        INFO("busy-poll " << bp << ": " << j["client"].dump() << " " << j["server"].dump());
        REQUIRE(j["requests"] == 20000);
        const json& c = j["client"];
        CHECK(c["busy_poll_us"].get<double>() == std::stod(bp));
        CHECK(c["cpu_s"].get<double>() > 0);
        CHECK(c["cpu_us_per_request"].get<double>() > 0);
        CHECK(c["cpu_us_per_request"].get<double>() < 100'000);
        for (const char* k : {"voluntary_csw", "involuntary_csw", "voluntary_csw_per_request",
                              "involuntary_csw_per_request"})
            CHECK(c.contains(k));
        const json& s = j["server"];
        REQUIRE(s.is_object());
        CHECK(s["pid"] == server.pid());
        // 20,000 echoes cost the server several clock ticks (10 ms each) even
        // on a fast CPU: 3,000 (about 12 ms at 4 us) could read as 0.
        CHECK(s["cpu_s"].get<double>() > 0);
        CHECK(s["cpu_us_per_request"].get<double>() > 0);
        CHECK(s["cpu_us_per_request"].get<double>() < 100'000);
        CHECK(s.contains("voluntary_csw_per_request"));
        CHECK(s.contains("involuntary_csw_per_request"));
        reports[bp] = j;
    }
    CHECK(reports["100000"]["client"]["voluntary_csw_per_request"].get<double>() < 0.2);

    // Without --server-pid there is no server figure.
    RunResult r = run_loadgen(
        {target, "-c", "1", "--threads", "1", "-n", "10", "--json", tmp.file("none.json")});
    REQUIRE(r.exit_code == 0);
    CHECK(read_json(tmp.file("none.json"))["server"].is_null());
    CHECK(r.out.find("Server pid") == std::string::npos);
}

TEST_CASE("loadgen works with each wait policy: auto (the default), 0 and 50", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    const std::string target = "127.0.0.1:" + std::to_string(server.port());
    // One worker: a CPU stays free for the server (on a machine of two or
    // more), so auto spins and watches (see the next cases for when not).
    const bool ruled_out = ::sysconf(_SC_NPROCESSORS_ONLN) <= 1;
    for (const std::string bp : {"", "auto", "0", "50"}) {
        const std::string file = tmp.file("wait" + bp + ".json");
        std::vector<std::string> args{target, "-c",  "8",        "--threads", "1",
                                      "-d",   "1.2", "--verify", "--json",    file};
        if (!bp.empty()) args.insert(args.end(), {"--busy-poll", bp});
        RunResult r = run_loadgen(args);
        INFO("--busy-poll '" << bp << "': " << r.out << r.err);
        REQUIRE(r.exit_code == 0);
        json j = read_json(file);
        CHECK(j["requests"].get<uint64_t>() > 100);
        CHECK(j["errors_total"] == 0);
        const json& c = j["client"];
        const bool adaptive = bp.empty() || bp == "auto";
        CHECK(c["wait"] == (adaptive ? "auto" : "fixed"));
        CHECK(c["busy_poll_us"].get<double>() == (adaptive ? 50 : std::stod(bp)));
        const double share = c["spin_share"].get<double>();
        if (adaptive && ruled_out) {
            CHECK(share == 0.0);
            CHECK(c["spin_ruled_out"].is_string());
        } else if (adaptive) {
            // 1.2 s, watched in epochs of 20 ms: the spin runs at least its
            // first window (100 ms); echo-threaded's 8 threads may then make
            // the worker wait for a CPU, and auto sleep.
            CHECK(c["spin_ruled_out"].is_null());
            CHECK(c["wait_s"].get<double>() > 1.0);
            CHECK(c["wait_s"].get<double>() < 1.5);
            CHECK(share > 0.05);
            CHECK(share <= 1.0);
            CHECK(c["wait_switches"].get<uint64_t>() >= c["wait_contended"].get<uint64_t>());
            CHECK(r.out.find("busy-poll auto: 50us spin ") != std::string::npos);
        } else {
            CHECK(share == (bp == "0" ? 0.0 : 1.0));
            CHECK(r.out.find("(busy-poll " + bp + "us)") != std::string::npos);
        }
    }
    // A merged report keeps the adaptive figures, summed.
    RunResult m = run({bin("loadgen"), "merge", tmp.file("waitauto.json"), tmp.file("wait.json"),
                       "--json", tmp.file("merged.json")},
                      30s);
    REQUIRE(m.exit_code == 0);
    json a = read_json(tmp.file("waitauto.json"))["client"];
    json b = read_json(tmp.file("wait.json"))["client"];
    json mc = read_json(tmp.file("merged.json"))["client"];
    CHECK(mc["wait"] == "auto");
    CHECK(mc["wait_probes"].get<uint64_t>() ==
          a["wait_probes"].get<uint64_t>() + b["wait_probes"].get<uint64_t>());
}

TEST_CASE("loadgen auto: as many workers as CPUs against a local server never spin",
          "[integration]") {
    ServerProcess server({bin("echo-epoll"), "--port", "0"});
    TempDir tmp("loadgen-test");
    const std::string target = "127.0.0.1:" + std::to_string(server.port());
    const std::string cpus = std::to_string(::sysconf(_SC_NPROCESSORS_ONLN));
    // The default --threads is one per CPU of the affinity mask: all of them here.
    for (const std::string& threads : {std::string(), cpus}) {
        const std::string file = tmp.file("ruled" + threads + ".json");
        std::vector<std::string> args{target, "-c", "8", "-d", "0.8", "--json", file};
        if (!threads.empty()) args.insert(args.end(), {"--threads", threads});
        RunResult r = run_loadgen(args);
        INFO("--threads '" << threads << "': " << r.out << r.err);
        REQUIRE(r.exit_code == 0);
        const json c = read_json(file)["client"];
        CHECK(c["wait"] == "auto");
        CHECK(c["spin_share"].get<double>() == 0.0);
        CHECK(c["wait_probes"].get<uint64_t>() == 0);
        CHECK(c["spin_ruled_out"].get<std::string>().find("the server on this machine") !=
              std::string::npos);
        CHECK(r.out.find("busy-poll auto: no spin, ruled out: " + cpus + " worker") !=
              std::string::npos);
    }
    // Asked for, the spin still runs.
    RunResult f = run_loadgen({target, "-c", "8", "-d", "0.5", "--threads", cpus, "--busy-poll",
                               "50", "--json", tmp.file("fixed.json")});
    REQUIRE(f.exit_code == 0);
    CHECK(read_json(tmp.file("fixed.json"))["client"]["spin_share"].get<double>() == 1.0);
}

TEST_CASE("loadgen auto: a worker on the server's CPU sees the contention and sleeps",
          "[integration]") {
    // Both on CPU 0: while the worker spins, the server waits for the CPU,
    // and the worker waits too whenever the server runs (run_delay ~45 %
    // measured). The first window (100 ms) shows it; the rest is sleep.
    ServerProcess server({"/usr/bin/taskset", "-c", "0", bin("echo-epoll"), "--port", "0"});
    TempDir tmp("loadgen-test");
    const std::string target = "127.0.0.1:" + std::to_string(server.port());
    RunResult r = run({"/usr/bin/taskset", "-c", "0", bin("loadgen"), target, "-c", "20", "-d",
                       "1.5", "--json", tmp.file("same-cpu.json")},
                      30s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const json c = read_json(tmp.file("same-cpu.json"))["client"];
    if (::sysconf(_SC_NPROCESSORS_ONLN) <= 1) {
        CHECK(c["spin_ruled_out"].is_string());  // the rule came first
        return;
    }
    CHECK(c["spin_ruled_out"].is_null());
    CHECK(c["wait_contended"].get<uint64_t>() >= 1);
    CHECK(c["spin_share"].get<double>() < 0.5);
    CHECK(r.out.find("for CPU contention") != std::string::npos);
}

TEST_CASE("loadgen --busy-poll and --server-pid refuse bad values", "[integration]") {
    for (std::vector<std::string> bad : {
             std::vector<std::string>{"--busy-poll", "-1"},
             {"--busy-poll", "100001"},
             {"--busy-poll", "soon"},
             {"--busy-poll", "50x"},
             {"--busy-poll", ""},
             {"--server-pid", "-5"},
             {"--server-pid", "2147483647"},  // above any pid_max: no such process
             {"--server-pid", "nginx"},
         }) {
        std::vector<std::string> args{bin("loadgen"), "127.0.0.1:9", "-n", "1"};
        args.insert(args.end(), bad.begin(), bad.end());
        RunResult r = run(args, 30s);
        INFO(bad[0] << " " << bad[1] << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind("loadgen: ", 0) == 0);
        CHECK(r.err.find(bad[0]) != std::string::npos);
    }
}

TEST_CASE("loadgen --hdr-log writes HdrHistogram's percentile distribution", "[integration]") {
    ServerProcess server({bin("echo-threaded"), "--port", "0"});
    TempDir tmp("loadgen-test");
    RunResult r =
        run_loadgen({"127.0.0.1:" + std::to_string(server.port()), "-c", "4", "--threads", "1",
                     "-n", "3000", "--json", tmp.file("r.json"), "--hdr-log", tmp.file("r.hgrm")});
    REQUIRE(r.exit_code == 0);
    Hgrm h = parse_hgrm(tmp.file("r.hgrm"));
    json j = read_json(tmp.file("r.json"));
    CHECK(h.header);
    CHECK(h.buckets_line);
    REQUIRE(h.rows.size() >= 2);
    CHECK(h.total == 3000);
    CHECK(h.rows.back().percentile == 1.0);
    CHECK(h.rows.back().count == 3000);
    for (std::size_t k = 1; k < h.rows.size(); ++k) {
        INFO("row " << k);
        CHECK(h.rows[k].value >= h.rows[k - 1].value);
        CHECK(h.rows[k].percentile > h.rows[k - 1].percentile);
        CHECK(h.rows[k].count >= h.rows[k - 1].count);
    }
    // Milliseconds, against the JSON's microseconds.
    const json& lat = j["latency_us"];
    CHECK(h.max == Approx(lat["max"].get<double>() / 1e3).epsilon(0.001));
    CHECK(h.mean == Approx(lat["avg"].get<double>() / 1e3).epsilon(0.01));
    CHECK(h.rows.front().value == Approx(lat["min"].get<double>() / 1e3).epsilon(0.01));
}
