// labs/06-event-loop: the programs, started for real — loop-echo on the shared
// echo fixture, loop-fetch and loop-crawl against http-testd, loop-demo.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/io.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

IOLAB_ECHO_FIXTURE_CASES("loop-echo", (EchoServerSpec{"loop-echo", {}}))
IOLAB_ECHO_FIXTURE_CASES("loop-echo --out-limit 4096",
                         (EchoServerSpec{"loop-echo", {"--out-limit", "4096"}}))

namespace {

// GET http://127.0.0.1:PORT/PATH with a blocking socket; the body.
std::string http_body(uint16_t port, const std::string& path) {
    iolab::Fd fd = connect_local(port);
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    REQUIRE(iolab::write_all(fd.get(), req).ok());
    std::string all;
    char buf[4096];
    for (;;) {
        iolab::IoResult r = iolab::read_some(fd.get(), buf);
        if (!r.ok()) break;
        all.append(buf, r.bytes);
    }
    auto pos = all.find("\r\n\r\n");
    REQUIRE(pos != std::string::npos);
    return all.substr(pos + 4);
}

nlohmann::json stats(uint16_t port) {
    return nlohmann::json::parse(http_body(port, "/stats"));
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        out.push_back(l);
    return out;
}

std::string base_url(const ServerProcess& s) {
    return "http://127.0.0.1:" + std::to_string(s.port());
}

}  // namespace

TEST_CASE("loop-fetch: callbacks and coroutines print the same lines", "[integration]") {
    ServerProcess testd({bin("http-testd"), "--port", "0"});
    const std::string u = base_url(testd);
    std::vector<std::string> urls = {u + "/bytes/10",   u + "/delay/150",      u + "/chunked/70000",
                                     u + "/status/404", "http://127.0.0.1:1/", u + "/redirect/0"};
    auto argv = [&](std::vector<std::string> extra) {
        std::vector<std::string> a{bin("loop-fetch")};
        a.insert(a.end(), extra.begin(), extra.end());
        a.insert(a.end(), urls.begin(), urls.end());
        return a;
    };
    RunResult cb = run(argv({}), 30s);
    RunResult co = run(argv({"--coroutines"}), 30s);
    INFO("callbacks:\n" << cb.out << cb.err << "coroutines:\n" << co.out << co.err);
    CHECK(cb.exit_code == 3);  // one URL failed
    CHECK(co.exit_code == 3);
    CHECK(cb.out == co.out);
    auto l = lines_of(cb.out);
    REQUIRE(l.size() == 7);
    CHECK(l[0] == u + "/bytes/10 status=200 bytes=10");
    CHECK(l[1] == u + "/delay/150 status=200 bytes=15");
    CHECK(l[2] == u + "/chunked/70000 status=200 bytes=70000");
    CHECK(l[3].find("status=404") != std::string::npos);
    CHECK(l[4] == "http://127.0.0.1:1/ error=\"connect 127.0.0.1:1: Connection refused\"");
    CHECK(l[6] == "summary: urls=6 ok=4 http_errors=1 failed=1 bytes=70051");

    // A request over its time: the same error text in both styles.
    for (const char* mode : {"", "--coroutines"}) {
        std::vector<std::string> a{bin("loop-fetch"), "--timeout", "0.1", u + "/delay/2000"};
        if (*mode) a.push_back(mode);
        RunResult r = run(a, 10s);
        CHECK(r.exit_code == 3);
        CHECK(r.out.find("error=\"timed out after 0.1 s\"") != std::string::npos);
    }
}

TEST_CASE("loop-fetch: --concurrency is what the server sees in flight", "[integration]") {
    for (const char* mode : {"callbacks", "--coroutines"}) {
        for (int c : {3, 8}) {
            INFO(mode << " -c " << c);
            ServerProcess testd({bin("http-testd"), "--port", "0"});
            std::vector<std::string> a{bin("loop-fetch"), "-c", std::to_string(c)};
            if (std::string(mode) != "callbacks") a.push_back(mode);
            for (int i = 0; i < 16; ++i)
                a.push_back(base_url(testd) + "/delay/100");
            RunResult r = run(a, 30s);
            REQUIRE(r.exit_code == 0);
            auto s = stats(testd.port());
            CHECK(s["requests"].get<int>() == 16);
            CHECK(s["max_in_flight"].get<int>() <= c);
            CHECK(s["max_in_flight"].get<int>() >= 2);
        }
    }
}

TEST_CASE("loop-crawl: every page once, in either printing order", "[integration]") {
    ServerProcess testd({bin("http-testd"), "--port", "0"});
    const std::string start = base_url(testd) + "/site/";
    RunResult g = run({bin("loop-crawl"), "-c", "5", start}, 60s);
    INFO(g.out << g.err);
    REQUIRE(g.exit_code == 0);
    auto gl = lines_of(g.out);
    REQUIRE(!gl.empty());
    CHECK(gl.back() == "summary: pages=102 ok=101 http_errors=1 failed=0 levels=8");
    gl.pop_back();
    CHECK(gl.front() == start + " status=200 bytes=90");  // discovery order: the start first
    std::set<std::string> gset(gl.begin(), gl.end());
    CHECK(gset.size() == gl.size());  // no page twice
    CHECK(gset.count(base_url(testd) + "/site/missing status=404 bytes=13") == 1);
    CHECK(stats(testd.port())["requests"].get<int>() == 102);  // the server agrees

    RunResult a = run({bin("loop-crawl"), "-c", "5", "--as-completed", start}, 60s);
    REQUIRE(a.exit_code == 0);
    auto al = lines_of(a.out);
    al.pop_back();
    CHECK(std::set<std::string>(al.begin(), al.end()) == gset);
}

TEST_CASE("loop-crawl: the semaphore bound holds, as the server counts it", "[integration]") {
    for (int c : {1, 4}) {
        INFO("-c " << c);
        ServerProcess testd({bin("http-testd"), "--port", "0"});
        RunResult r = run({bin("loop-crawl"), "-c", std::to_string(c), "--server-delay", "20",
                           "--max-pages", "40", "--as-completed", base_url(testd) + "/site/"},
                          60s);
        REQUIRE(r.exit_code == 0);
        auto s = stats(testd.port());
        CHECK(s["requests"].get<int>() == 80);  // 40 pages, each after one /delay
        CHECK(s["max_in_flight"].get<int>() <= c);
        CHECK(s["max_in_flight"].get<int>() >= (c == 1 ? 1 : 2));
    }
}

TEST_CASE("loop-demo: call_soon first, then timers by deadline", "[integration]") {
    RunResult r = run({bin("loop-demo"), "--part", "ordering"}, 10s);
    REQUIRE(r.exit_code == 0);
    std::vector<std::string> order;
    std::regex line(R"(\+\s*\d+ ms  (.*))");
    for (const auto& l : lines_of(r.out)) {
        std::smatch m;
        if (std::regex_match(l, m, line)) order.push_back(m[1]);
    }
    CHECK(order == std::vector<std::string>{
                       "call_soon #1", "call_soon #2", "call_later(0)", "call_at(now + 100 ms)",
                       "call_at(now + 100 ms), scheduled second", "call_later(200 ms)"});
    CHECK(run({bin("loop-demo"), "--part", "nope"}, 10s).exit_code == 2);
}
