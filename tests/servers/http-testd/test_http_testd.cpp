// Integration tests of http-testd: the server conventions, streaming under a
// fixed memory bound while other clients are served, and strict request
// framing (RFC 9112 section 6.3) checked with raw requests.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/http.hpp"
#include "common/io.hpp"
#include "tests/support/asan.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/http_testd.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

nlohmann::json stats(Testd& t) {
    return nlohmann::json::parse(t.stats_text());
}

// VmRSS of the server, in KiB; the test fails when there is none.
long server_rss_kib(pid_t pid) {
    const long kib = rss_kib(pid);
    if (kib < 0) FAIL("no VmRSS for pid " << pid);
    return kib;
}

// One GET /bytes/1 on a new connection: milliseconds until the whole answer
// (and the close) arrived; negative when the answer is not the right one.
double probe_bytes1_ms(uint16_t port) {
    const auto t0 = Clock::now();
    RawReply r =
        raw_exchange(port, "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    bool ok = r.closed && r.bytes.starts_with("HTTP/1.1 200") && r.bytes.ends_with('\0');
    return ok ? ms : -1;
}

struct StreamRun {
    long idle_kib = 0, peak_kib = 0;
    std::vector<double> probes_ms;
    uint64_t body_bytes = 0;
    bool body_matches = true;
    bool done = false;
};

// Requests `target` on one connection and reads it (every `pause` a read of up
// to `per_read` bytes) until `limit` bytes of body or the end; meanwhile
// samples the server's RSS and times /bytes/1 from a second connection.
StreamRun stream_while_probing(Testd& t, const std::string& target, uint64_t limit,
                               std::size_t per_read, std::chrono::milliseconds pause) {
    StreamRun run;
    REQUIRE(probe_bytes1_ms(t.proc.port()) >= 0);  // warm: the first request's allocations
    run.idle_kib = run.peak_kib = server_rss_kib(t.proc.pid());
    iolab::Fd fd = connect_local(t.proc.port());
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    REQUIRE(iolab::write_all(fd.get(), {req.data(), req.size()}).bytes == req.size());

    iolab::http::ResponseParser parser;
    const std::string expect = testd_pattern(65521 * 2);
    parser.on_body([&](std::string_view piece) {
        for (char ch : piece) {
            if (ch != expect[run.body_bytes % 65521]) run.body_matches = false;
            ++run.body_bytes;
        }
    });
    std::vector<char> buf(per_read);
    auto next_probe = Clock::now();
    const auto deadline = Clock::now() + 120s;
    while (!parser.done() && !parser.failed() && run.body_bytes < limit &&
           Clock::now() < deadline) {
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) > 0) {
            ssize_t n = ::read(fd.get(), buf.data(), buf.size());
            if (n <= 0) break;
            parser.feed({buf.data(), static_cast<std::size_t>(n)});
        }
        if (Clock::now() >= next_probe) {
            run.peak_kib = std::max(run.peak_kib, server_rss_kib(t.proc.pid()));
            run.probes_ms.push_back(probe_bytes1_ms(t.proc.port()));
            next_probe = Clock::now() + 50ms;
        }
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
    run.peak_kib = std::max(run.peak_kib, server_rss_kib(t.proc.pid()));
    run.done = parser.done();
    return run;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void check_bounded(const StreamRun& r, const std::string& what) {
    INFO(what << ": idle " << r.idle_kib << " KiB, peak " << r.peak_kib << " KiB, "
              << r.probes_ms.size() << " probes, median " << median(r.probes_ms) << " ms, slowest "
              << *std::max_element(r.probes_ms.begin(), r.probes_ms.end()) << " ms, body "
              << r.body_bytes);
    CHECK(r.body_matches);
#if !IOLAB_TEST_ASAN
    CHECK(r.peak_kib - r.idle_kib < 16 * 1024);
#else
    // Under ASan, freed blocks wait in its quarantine and its allocator keeps
    // what it maps: RSS says nothing about the server's own bound there. The
    // default and clang presets check it.
#endif
    REQUIRE(r.probes_ms.size() >= 5);
    CHECK(std::none_of(r.probes_ms.begin(), r.probes_ms.end(), [](double ms) { return ms < 0; }));
    // The goal is "under 20 ms"; the median keeps one scheduling hiccup of a
    // busy machine from deciding it.
    CHECK(median(r.probes_ms) < 20.0);
    WARN(what << ": RSS +" << (r.peak_kib - r.idle_kib) << " KiB, /bytes/1 median "
              << median(r.probes_ms) << " ms over " << r.probes_ms.size() << " probes");
}

// How many complete responses `bytes` holds, parsed one after the other.
int count_responses(const std::string& bytes) {
    iolab::http::ResponseParser p;
    std::string_view rest = bytes;
    int n = 0;
    while (!rest.empty()) {
        rest.remove_prefix(p.feed(rest));
        if (!p.done()) break;
        ++n;
        p.reset();
    }
    return n;
}

}  // namespace

// ---- conventions --------------------------------------------------------------

TEST_CASE("http-testd follows the server conventions", "[http][integration]") {
    Testd t;
    CHECK(t.proc.listening_line().starts_with("listening on 127.0.0.1:"));
    RunResult r = http_get({t.url("/bytes/1000")});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == testd_pattern(1000));
    auto s = stats(t);
    CHECK(s["requests"] == 1);  // /stats itself is not counted
    CHECK(s["in_flight"] == 0);
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
    auto summary = parse_summary(t.proc.out());
    REQUIRE(summary);
    CHECK(summary->connections == 2);
    CHECK(summary->bytes_out > 1000);
    CHECK(summary->bytes_in > 100);
    RunResult v = run({bin("http-testd"), "--version"}, 10s);
    CHECK(v.exit_code == 0);
    CHECK(v.out.find("iolab") != std::string::npos);
}

TEST_CASE("http-testd stops with requests still waiting on a timer", "[http][integration]") {
    Testd t;
    Process slow({bin("http-get"), t.url("/delay/20000")});
    // Wait until the request is in flight.
    for (int i = 0; i < 200 && stats(t)["in_flight"] != 1; ++i)
        std::this_thread::sleep_for(20ms);
    REQUIRE(t.proc.stop(SIGINT, 10s) == 0);
    CHECK(parse_summary(t.proc.out()));
    CHECK(slow.wait(10s) != -1);
}

TEST_CASE("http-testd --max-clients answers 503 beyond the limit", "[http][integration]") {
    Testd t({"--max-clients", "1", "-v"});
    Process slow({bin("http-get"), t.url("/delay/1500")});
    // Wait until the server has admitted the slow client (its -v line), so
    // that no probe of ours takes the one slot first and gets it refused.
    for (int i = 0; i < 2000 && t.proc.err().find("connection from") == std::string::npos; ++i)
        std::this_thread::sleep_for(10ms);
    REQUIRE(t.proc.err().find("connection from") != std::string::npos);
    // Its request is in flight: /stats is refused (the slot is taken).
    bool busy = false;
    for (int i = 0; i < 100 && !busy; ++i) {
        RunResult r = http_get({"-i", t.url("/stats")});
        busy = r.out.starts_with("HTTP/1.1 503");
        if (!busy) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(busy);
    RunResult second = http_get({"--fail", t.url("/bytes/5")});
    CHECK(second.exit_code == 7);
    CHECK(second.err.find("503") != std::string::npos);
    CHECK(slow.wait(10s) == 0);
    CHECK(slow.out() == "delayed 1500 ms\n");
    // The slot is free again.
    CHECK(http_get({t.url("/bytes/5")}).out == testd_pattern(5));
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
    auto summary = parse_summary(t.proc.out());
    REQUIRE(summary);
    CHECK(summary->refused >= 2);
}

// ---- streaming ----------------------------------------------------------------

TEST_CASE("http-testd streams 256 MiB with bounded memory and a free loop", "[http][integration]") {
    Testd t;
    SECTION("chunk=1, read slowly") {
        StreamRun r = stream_while_probing(t, "/chunked/268435456?chunk=1", 2u << 20, 16384, 10ms);
        CHECK(r.body_bytes >= (2u << 20));
        check_bounded(r, "/chunked/268435456?chunk=1");
    }
    SECTION("default chunks, read fully") {
        StreamRun r = stream_while_probing(t, "/chunked/268435456", uint64_t{1} << 40, 65536, 0ms);
        CHECK(r.done);
        CHECK(r.body_bytes == 268435456);
        check_bounded(r, "/chunked/268435456");
    }
    SECTION("Content-Length, read fully") {
        StreamRun r = stream_while_probing(t, "/bytes/268435456", uint64_t{1} << 40, 65536, 0ms);
        CHECK(r.done);
        CHECK(r.body_bytes == 268435456);
        check_bounded(r, "/bytes/268435456");
    }
    // Whatever was left unfinished (the slow reader) ends with its connection.
    for (int i = 0; i < 100 && stats(t)["in_flight"] != 0; ++i)
        std::this_thread::sleep_for(20ms);
    CHECK(stats(t)["in_flight"] == 0);
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
}

TEST_CASE("http-testd: a client that leaves mid-stream costs nothing after",
          "[http][integration]") {
    Testd t;
    for (int i = 0; i < 20; ++i) {
        iolab::Fd fd = connect_local(t.proc.port());
        std::string req = "GET /chunked/100000000?chunk=7 HTTP/1.1\r\nHost: t\r\n\r\n";
        iolab::write_all(fd.get(), {req.data(), req.size()});
        char buf[4096];
        CHECK(::read(fd.get(), buf, sizeof buf) > 0);
    }  // each closes here, mid-body
    for (int i = 0; i < 100 && stats(t)["open_connections"] != 1; ++i)
        std::this_thread::sleep_for(20ms);
    auto s = stats(t);
    CHECK(s["in_flight"] == 0);
    CHECK(s["open_connections"] == 1);  // the /stats request's own
    CHECK(probe_bytes1_ms(t.proc.port()) >= 0);
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
}

// A chunked response goes out in pieces (the head, then the chunks). Without
// TCP_NODELAY, Nagle's algorithm held the last piece until the client's
// delayed ACK: 40 ms for every request after the first on a kept-alive
// connection. Ten requests then took at least 360 ms; now a few.
TEST_CASE("http-testd: kept-alive chunked responses do not wait for delayed ACKs",
          "[http][integration]") {
    Testd t;
    iolab::Fd fd = connect_local(t.proc.port());
    const std::string req = "GET /chunked/4096 HTTP/1.1\r\nHost: t\r\n\r\n";
    const auto t0 = Clock::now();
    for (int i = 0; i < 10; ++i) {
        REQUIRE(!iolab::write_all(fd.get(), {req.data(), req.size()}).error());
        std::string got;
        char buf[8192];
        while (!got.ends_with("\r\n0\r\n\r\n")) {
            const ssize_t n = ::read(fd.get(), buf, sizeof buf);
            REQUIRE(n > 0);
            got.append(buf, static_cast<std::size_t>(n));
        }
        CHECK(got.starts_with("HTTP/1.1 200"));
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    INFO("10 requests on one connection: " << ms.count() << " ms");
    CHECK(ms < 300ms);
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
}

// A client may shut its sending side once the request is out. evhttp reads
// that as the client leaving and dropped a streamed response after its first
// window (16 KiB of 10 MB arrived); the whole response must arrive.
TEST_CASE("http-testd: a client that half-closes after its request gets the whole stream",
          "[http][integration]") {
    Testd t;
    for (const char* path : {"/bytes/10000000", "/chunked/1000000", "/chunked/100000?chunk=7"}) {
        INFO(path);
        iolab::Fd fd = connect_local(t.proc.port());
        const std::string req =
            std::string("GET ") + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        REQUIRE(!iolab::write_all(fd.get(), {req.data(), req.size()}).error());
        REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
        std::string got;
        std::vector<char> buf(1 << 20);
        for (ssize_t n; (n = ::read(fd.get(), buf.data(), buf.size())) > 0;)
            got.append(buf.data(), static_cast<std::size_t>(n));
        iolab::http::ResponseParser parser;  // the whole body, framed as sent
        parser.feed(got);
        parser.feed_eof();
        REQUIRE(parser.done());
        const std::string_view last =
            std::string_view(path).substr(std::string_view(path).rfind('/') + 1);
        const std::size_t n = std::stoul(std::string(last.substr(0, last.find('?'))));
        CHECK(parser.response().body.size() == n);
        CHECK(parser.response().body == testd_pattern(n));
    }
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
}

// ---- framing --------------------------------------------------------------------

// HTTP/1.0 has no chunked encoding: /chunked/N must reach an HTTP/1.0 client
// as the bare N bytes, ended by the close. Chunks under 1 KiB took a path that
// framed them itself and put chunk-size lines into the HTTP/1.0 body (3,174
// bytes for /chunked/3000?chunk=100).
TEST_CASE("http-testd: an HTTP/1.0 client gets /chunked/N unframed", "[http][integration]") {
    Testd t;
    for (const char* path : {"/chunked/3000?chunk=100", "/chunked/10?chunk=4",
                             "/chunked/200000?chunk=7", "/chunked/100000"}) {
        INFO(path);
        RawReply r = raw_exchange(t.proc.port(), std::string("GET ") + path + " HTTP/1.0\r\n\r\n");
        REQUIRE(r.closed);
        const std::size_t head_end = r.bytes.find("\r\n\r\n");
        REQUIRE(head_end != std::string::npos);
        const std::string head = r.bytes.substr(0, head_end);
        CHECK(head.find("Transfer-Encoding") == std::string::npos);
        const std::string body = r.bytes.substr(head_end + 4);
        const std::string_view p(path);
        const std::string num(p.substr(
            9, p.find('?') == std::string_view::npos ? std::string_view::npos : p.find('?') - 9));
        const std::size_t n = std::stoul(num);
        CHECK(body.size() == n);
        CHECK(body == testd_pattern(n));
    }
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
}

TEST_CASE("http-testd refuses ambiguous framing and answers nothing smuggled behind it",
          "[http][integration]") {
    Testd t;
    const std::string smuggled = "GET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n";
    struct Case {
        const char* name;
        std::string head;
        const char* status;
    };
    const std::vector<Case> cases = {
        {"two Content-Length",
         "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
         "Content-Length: 37\r\n\r\n",
         "HTTP/1.1 400 "},
        {"Content-Length +0", "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nContent-Length: +0\r\n\r\n",
         "HTTP/1.1 400 "},
        {"Content-Length abc", "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
         "HTTP/1.1 400 "},
        {"Transfer-Encoding xchunked",
         "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
         "HTTP/1.1 400 "},
        {"Transfer-Encoding gzip, chunked",
         "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
         "HTTP/1.1 400 "},
        {"Content-Length with Transfer-Encoding",
         "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "HTTP/1.1 400 "},
        {"HTTP/1.1 without Host", "GET /bytes/1 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"two Host fields", "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", "HTTP/1.1 400 "},
        {"space before the colon", "GET /bytes/1 HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n",
         "HTTP/1.1 400 "},
        {"HTTP/1.9", "GET /bytes/1 HTTP/1.9\r\nHost: t\r\n\r\n", "HTTP/1.1 505 "},
        // evhttp's own request-line parser refuses another major version
        // before any hook runs: 400 there, not 505 (see the README).
        {"HTTP/2.0", "GET /bytes/1 HTTP/2.0\r\nHost: t\r\n\r\n", "HTTP/1.1 400 "},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        RawReply r = raw_exchange(t.proc.port(), c.head + smuggled);
        CHECK(r.bytes.starts_with(c.status));
        CHECK(r.closed);
        CHECK(count_responses(r.bytes) == 1);
    }
    // A sound request with a body, then a pipelined one: both answered.
    RawReply ok = raw_exchange(
        t.proc.port(), "GET /bytes/3 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd" +
                           smuggled.substr(0, smuggled.size() - 2) + "Connection: close\r\n\r\n");
    CHECK(ok.bytes.starts_with("HTTP/1.1 200 "));
    CHECK(count_responses(ok.bytes) == 2);
    RawReply chunked =
        raw_exchange(t.proc.port(),
                     "GET /bytes/3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "2\r\nab\r\n0\r\n\r\nGET /bytes/2 HTTP/1.0\r\n\r\n");
    CHECK(count_responses(chunked.bytes) == 2);
    CHECK(chunked.closed);
    REQUIRE(t.proc.stop(SIGTERM, 10s) == 0);
}
