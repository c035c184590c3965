// Integration tests of http-get: the real binary over loopback against
// http-testd, plus a scripted raw server for the responses no real server sends.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "tests/support/http_testd.hpp"
#include "tests/support/process.hpp"
#include "tests/support/raw_server.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

namespace {

std::string pattern(std::size_t n) {
    return testd_pattern(n);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

// ---- http-get against http-testd ---------------------------------------------

// One scenario, kept whole (over 80 lines): its steps read as one story.
TEST_CASE("http-get fetches every route of http-testd", "[http][integration]") {
    Testd t;
    SECTION("/bytes and /chunked: exact bodies") {
        for (std::size_t n : {0, 1, 4096, 65521, 200000}) {
            RunResult a = http_get({t.url("/bytes/" + std::to_string(n))});
            REQUIRE(a.exit_code == 0);
            CHECK(a.out == pattern(n));
            RunResult b = http_get({t.url("/chunked/" + std::to_string(n) + "?chunk=1000")});
            REQUIRE(b.exit_code == 0);
            CHECK(b.out == pattern(n));
        }
    }
    SECTION("/delay") {
        auto start = std::chrono::steady_clock::now();
        RunResult a = http_get({t.url("/delay/300")});
        CHECK(a.exit_code == 0);
        CHECK(a.out == "delayed 300 ms\n");
        CHECK(std::chrono::steady_clock::now() - start >= 300ms);
    }
    SECTION("/status: printed, and --fail turns >= 400 into exit 7") {
        RunResult a = http_get({t.url("/status/404")});
        CHECK(a.exit_code == 0);
        CHECK(a.out == "status 404\n");
        RunResult b = http_get({"--fail", t.url("/status/503")});
        CHECK(b.exit_code == 7);
        CHECK(b.out.empty());
        CHECK(b.err.find("503") != std::string::npos);
        RunResult c = http_get({"--fail", t.url("/status/201")});
        CHECK(c.exit_code == 0);
        RunResult d = http_get({"-i", t.url("/status/204")});
        CHECK(d.exit_code == 0);
        CHECK(d.out.starts_with("HTTP/1.1 204 No Content\r\n"));
    }
    SECTION("/redirect: -L follows, --max-redirs bounds") {
        RunResult a = http_get({t.url("/redirect/3")});
        CHECK(a.exit_code == 0);
        CHECK(a.out == "redirecting\n");
        RunResult b = http_get({"-L", t.url("/redirect/3")});
        CHECK(b.exit_code == 0);
        CHECK(b.out == "redirects done\n");
        RunResult c = http_get({"-L", "--max-redirs", "2", t.url("/redirect/3")});
        CHECK(c.exit_code == 6);
        CHECK(c.err.find("too many redirects") != std::string::npos);
        RunResult d = http_get({"-L", "-i", t.url("/redirect/1")});
        CHECK(d.out.find("302 Found") != std::string::npos);
        CHECK(d.out.find("redirects done\n") != std::string::npos);
        CHECK(d.out.find("redirecting") == std::string::npos);  // bodies of hops are skipped
    }
    SECTION("/site pages link to each other") {
        RunResult a = http_get({t.url("/site/page/0")});
        CHECK(a.exit_code == 0);
        CHECK(a.out.find("href=\"/site/page/1\"") != std::string::npos);
        RunResult b = http_get({"--fail", t.url("/site/page/100000")});
        CHECK(b.exit_code == 7);
    }
    SECTION("-I, -i, -o and -v") {
        RunResult h = http_get({"-I", t.url("/bytes/5000")});
        CHECK(h.exit_code == 0);
        CHECK(h.out.starts_with("HTTP/1.1 200 OK\r\n"));
        CHECK(h.out.find("Content-Length: 5000\r\n") != std::string::npos);
        CHECK(h.out.ends_with("\r\n\r\n"));
        RunResult i = http_get({"-i", t.url("/chunked/10")});
        CHECK(i.out.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
        CHECK(i.out.ends_with("\r\n\r\n" + pattern(10)));
        char tmpl[] = "/tmp/iolab-http-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        std::string file = std::string(tmpl) + "/body";
        RunResult o = http_get({"-o", file, t.url("/bytes/70000")});
        CHECK(o.exit_code == 0);
        CHECK(o.out.empty());
        CHECK(read_file(file) == pattern(70000));
        std::remove(file.c_str());
        ::rmdir(tmpl);
        RunResult v = http_get({"-v", t.url("/bytes/3")});
        CHECK(v.err.find("> GET /bytes/3 HTTP/1.1") != std::string::npos);
        CHECK(v.err.find("> Host: 127.0.0.1:" + std::to_string(t.proc.port())) !=
              std::string::npos);
        CHECK(v.err.find("> Connection: close") != std::string::npos);
        CHECK(v.err.find("< HTTP/1.1 200 OK") != std::string::npos);
        CHECK(v.out == pattern(3));
    }
}

TEST_CASE("http-get prints the body byte-identical to curl -s", "[http][integration]") {
    Testd t;
    for (const char* path :
         {"/bytes/0", "/bytes/1", "/bytes/300000", "/chunked/123457?chunk=777", "/status/404",
          "/status/204", "/redirect/2", "/site/page/5", "/delay/10", "/nowhere"}) {
        INFO(path);
        RunResult ours = http_get({t.url(path)});
        RunResult curl = run({"/usr/bin/curl", "-s", t.url(path)}, 20s);
        REQUIRE(ours.exit_code == 0);
        REQUIRE(curl.exit_code == 0);
        CHECK(ours.out == curl.out);
    }
    RunResult ours = http_get({"-L", t.url("/redirect/4")});
    RunResult curl = run({"/usr/bin/curl", "-s", "-L", t.url("/redirect/4")}, 20s);
    CHECK(ours.out == curl.out);
}

TEST_CASE("http-get over IPv6 loopback", "[http][integration]") {
    // Skip quietly only if this machine has no ::1.
    try {
        iolab::listen_tcp("::1", 0);
    } catch (const std::exception&) {
        WARN("no IPv6 loopback here");
        return;
    }
    ServerProcess s({bin("http-testd"), "--host", "::1", "--port", "0"});
    RunResult r = http_get({"http://[::1]:" + std::to_string(s.port()) + "/bytes/100"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == pattern(100));
}

// ---- http-get: errors, each with its exit code ------------------------------------

TEST_CASE("http-get usage, URL, TLS, resolve and connect errors", "[http][integration]") {
    CHECK(http_get({}).exit_code == 2);
    CHECK(http_get({"--no-such-option", "http://127.0.0.1/"}).exit_code == 2);
    RunResult bad = http_get({"http://[::1/"});
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("bad URL") != std::string::npos);
    CHECK(http_get({"ftp://127.0.0.1/"}).exit_code == 2);
    RunResult tls = http_get({"https://127.0.0.1/"});
    CHECK(tls.exit_code == 9);
    CHECK(tls.err.find("TLS") != std::string::npos);
    // A label over 63 bytes cannot be put in a DNS query: fails locally.
    RunResult res = http_get({"http://" + std::string(70, 'a') + ".invalid/"});
    CHECK(res.exit_code == 3);
    CHECK(res.err.find("resolve") != std::string::npos);
    uint16_t closed_port;
    {
        iolab::Fd l = iolab::listen_tcp("127.0.0.1", 0);
        closed_port = iolab::local_address(l.get()).port();
    }
    RunResult refused = http_get({"http://127.0.0.1:" + std::to_string(closed_port) + "/"});
    CHECK(refused.exit_code == 4);
    CHECK(refused.err.find("Connection refused") != std::string::npos);
    RunResult help = http_get({"--help"});
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("9 https://") != std::string::npos);
}

TEST_CASE("http-get against malformed, truncated, slow and oversized responses",
          "[http][integration]") {
    struct Case {
        const char* name;
        std::vector<RawStep> script;
        RawEnd end;
        int exit_code;
        const char* message;  // in stderr
    };
    const std::string ok_head = "HTTP/1.1 200 OK\r\n";
    std::string many;
    for (int i = 0; i < 150; ++i)
        many += "X-" + std::to_string(i) + ": v\r\n";
    const std::vector<Case> cases = {
        {"garbage", {{"SSH-2.0-OpenSSH_9.2\r\n"}}, RawEnd::close, 6, "does not start with"},
        {"empty reply", {}, RawEnd::close, 6, "before any response byte"},
        {"reset before a reply", {}, RawEnd::reset, 8, "Connection reset"},
        {"truncated head", {{ok_head + "Content-Le"}}, RawEnd::close, 6, "header section"},
        {"truncated body",
         {{ok_head + "Content-Length: 100\r\n\r\nonly this"}},
         RawEnd::close,
         6,
         "after 9 of 100 body bytes"},
        {"truncated chunked",
         {{ok_head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel"}},
         RawEnd::close,
         6,
         "chunked body"},
        {"bad chunk size",
         {{ok_head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n"}},
         RawEnd::close,
         6,
         "hex number"},
        {"bad Content-Length",
         {{ok_head + "Content-Length: 12abc\r\n\r\n"}},
         RawEnd::close,
         6,
         "Content-Length"},
        {"folded header", {{ok_head + "X: a\r\n  b\r\n\r\n"}}, RawEnd::close, 6, "folding"},
        {"oversized header line",
         {{ok_head + "X-Big: " + std::string(20000, 'x') + "\r\n\r\n"}},
         RawEnd::close,
         6,
         "longer than 8192"},
        {"too many headers", {{ok_head + many + "\r\n"}}, RawEnd::close, 6, "more than 100"},
        {"HTTP/2 preface", {{"HTTP/2.0 200 OK\r\n\r\n"}}, RawEnd::close, 6, "version"},
        {"slow headers (held open)", {{"HTTP/1.1 200 OK\r\n"}}, RawEnd::hold, 5, "timed out"},
        {"silent server", {}, RawEnd::hold, 5, "timed out"},
        {"slow body, one byte at a time",
         {{ok_head + "Content-Length: 1000\r\n\r\n", 0ms},
          {"a", 400ms},
          {"b", 400ms},
          {"c", 400ms},
          {"d", 400ms},
          {"e", 400ms}},
         RawEnd::hold,
         5,
         "timed out"},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        RawServer server(c.script, c.end);
        auto start = std::chrono::steady_clock::now();
        RunResult r = http_get({"--timeout", "1", server.url("/x")}, 20s);
        INFO(r.err);
        CHECK(r.exit_code == c.exit_code);
        CHECK(r.err.find(c.message) != std::string::npos);
        CHECK(r.err.find("http-get: ") == 0);
        CHECK(std::chrono::steady_clock::now() - start < 10s);
    }
}

TEST_CASE("http-get: well-formed responses only a raw server sends", "[http][integration]") {
    SECTION("body delimited by the close, request written by hand") {
        RawServer s({{"HTTP/1.0 200 OK\r\n\r\nuntil ", 50ms}, {"the close"}});
        RunResult r = http_get({s.url("/path?q=1")});
        CHECK(r.exit_code == 0);
        CHECK(r.out == "until the close");
        auto reqs = s.requests();
        REQUIRE(reqs.size() == 1);
        CHECK(reqs[0].starts_with("GET /path?q=1 HTTP/1.1\r\n"));
        CHECK(reqs[0].find("\r\nHost: 127.0.0.1:" + std::to_string(s.port()) + "\r\n") !=
              std::string::npos);
        CHECK(reqs[0].find("\r\nUser-Agent: iolab-http-get/") != std::string::npos);
        CHECK(reqs[0].find("\r\nConnection: close\r\n") != std::string::npos);
    }
    SECTION("interim 100, chunked with extensions and trailers, split in odd places") {
        RawServer s({{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Enc", 30ms},
                     {"oding: chunked\r\n\r\n4;ext=1\r\nab", 30ms},
                     {"cd\r\n0\r\nTrailer: x\r\n\r\n"}});
        RunResult r = http_get({s.url()});
        CHECK(r.exit_code == 0);
        CHECK(r.out == "abcd");
    }
    SECTION("an absolute Location to another server, followed with -L") {
        Testd t;
        RawServer s({{"HTTP/1.1 301 Moved\r\nLocation: " + t.url("/bytes/7") +
                      "\r\nContent-Length: 0\r\n\r\n"}});
        RunResult r = http_get({"-L", s.url()});
        CHECK(r.exit_code == 0);
        CHECK(r.out == pattern(7));
    }
    SECTION("a redirect to https:// is refused clearly") {
        RawServer s({{"HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1/\r\n\r\n"}});
        RunResult r = http_get({"-L", s.url()});
        CHECK(r.exit_code == 9);
    }
}
