// Integration tests of http-get, fetcher and http-testd: the real binaries over
// loopback, plus a scripted raw server for the responses no real server sends.
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
#include "tests/support/raw_server.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

namespace {

// The body of /bytes/N, as http-testd documents it.
std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t j = i % 65521;
        s[i] = static_cast<char>((j * 31 + j / 251) & 0xFF);
    }
    return s;
}

struct Testd {
    ServerProcess proc;
    explicit Testd(std::vector<std::string> extra = {})
        : proc([&] {
              std::vector<std::string> argv{bin("http-testd"), "--port", "0"};
              argv.insert(argv.end(), extra.begin(), extra.end());
              return argv;
          }()) {}
    [[nodiscard]] std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(proc.port()) + path;
    }
    nlohmann::json stats() {
        RunResult r = run({bin("http-get"), url("/stats")}, 10s);
        REQUIRE(r.exit_code == 0);
        return nlohmann::json::parse(r.out);
    }
};

RunResult http_get(std::vector<std::string> args, std::chrono::milliseconds limit = 20s) {
    args.insert(args.begin(), bin("http-get"));
    return run(args, limit);
}

RunResult fetcher(std::vector<std::string> args, std::chrono::milliseconds limit = 60s) {
    args.insert(args.begin(), bin("fetcher"));
    return run(args, limit);
}

// fetcher's lines without the timings (and the summary without mode and time).
std::vector<std::string> stable_lines(const std::string& out, bool sort = false) {
    std::vector<std::string> lines;
    std::istringstream in(out);
    std::string line;
    static const std::regex ms(" ms=[0-9.]+$");
    static const std::regex summary(" mode=\\S+| seconds=\\S+| pages_per_sec=\\S+");
    while (std::getline(in, line)) {
        if (line.starts_with("summary:")) {
            line = std::regex_replace(line, summary, "");
        } else {
            line = std::regex_replace(line, ms, "");
        }
        lines.push_back(line);
    }
    if (sort) std::sort(lines.begin(), lines.end());
    return lines;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const std::vector<std::string> kModes = {"callbacks", "coroutines", "threads", "sequential"};

}  // namespace

// ---- http-get against http-testd ---------------------------------------------

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

// ---- fetcher ------------------------------------------------------------------------

TEST_CASE("fetcher: every mode gives the same results", "[http][integration]") {
    Testd t;
    uint16_t closed_port;
    {
        iolab::Fd l = iolab::listen_tcp("127.0.0.1", 0);
        closed_port = iolab::local_address(l.get()).port();
    }
    std::vector<std::string> urls = {
        t.url("/bytes/100"),
        t.url("/chunked/70000"),
        t.url("/status/404"),
        t.url("/status/204"),
        t.url("/redirect/2"),
        t.url("/delay/50"),
        t.url("/site/page/1"),
        t.url("/bytes/300000"),
        "https://127.0.0.1/",
        "http://localhost:" + std::to_string(t.proc.port()) + "/bytes/1",
        "http://127.0.0.1:" + std::to_string(closed_port) + "/"};
    std::vector<std::string> expected;
    for (const std::string& mode : kModes) {
        INFO(mode);
        std::vector<std::string> args = {"--mode", mode};
        args.insert(args.end(), urls.begin(), urls.end());
        RunResult r = fetcher(args);
        CHECK(r.exit_code == 3);  // two URLs fail
        auto lines = stable_lines(r.out);
        REQUIRE(lines.size() == urls.size() + 1);
        CHECK(lines[0] == t.url("/bytes/100") + " status=200 bytes=100");
        CHECK(lines[1] == t.url("/chunked/70000") + " status=200 bytes=70000");
        CHECK(lines[3] == t.url("/status/204") + " status=204 bytes=0");
        CHECK(lines[8].find("error=") != std::string::npos);
        CHECK(lines[10].find("Connection refused") != std::string::npos);
        uint64_t sum = 0;
        for (const auto& l : lines) {
            auto at = l.find(" bytes=");
            if (!l.starts_with("summary:") && at != std::string::npos) {
                sum += std::stoull(l.substr(at + 7));
            }
        }
        CHECK(sum > 370000);
        CHECK(lines.back() == "summary: urls=11 ok=9 failed=2 bytes=" + std::to_string(sum));
        if (expected.empty()) {
            expected = lines;
        } else {
            CHECK(lines == expected);
        }
    }
}

TEST_CASE("fetcher: --concurrency bounds the requests in flight", "[http][integration]") {
    for (const std::string& mode : kModes) {
        INFO(mode);
        Testd t;
        std::vector<std::string> args = {"--mode", mode, "--concurrency", "3", "--threads", "6"};
        for (int i = 0; i < 12; ++i)
            args.push_back(t.url("/delay/250"));
        RunResult r = fetcher(args);
        REQUIRE(r.exit_code == 0);
        auto s = t.stats();
        CHECK(s["requests"] == 12);
        CHECK(s["max_in_flight"] == (mode == "sequential" ? 1 : 3));
    }
    // Threads: the pool is the tighter bound when smaller.
    Testd t;
    std::vector<std::string> args = {"--mode", "threads", "--concurrency", "10", "--threads", "2"};
    for (int i = 0; i < 6; ++i)
        args.push_back(t.url("/delay/250"));
    REQUIRE(fetcher(args).exit_code == 0);
    CHECK(t.stats()["max_in_flight"] == 2);
}

TEST_CASE("fetcher: the concurrent modes overlap the waits", "[http][integration]") {
    Testd t;
    for (const char* mode : {"callbacks", "coroutines", "threads"}) {
        INFO(mode);
        std::vector<std::string> args = {"--mode", mode, "--concurrency", "10", "--threads", "10"};
        for (int i = 0; i < 10; ++i)
            args.push_back(t.url("/delay/500"));
        auto start = std::chrono::steady_clock::now();
        RunResult r = fetcher(args);
        REQUIRE(r.exit_code == 0);
        // Ten 500 ms waits one after another would take 5 s.
        CHECK(std::chrono::steady_clock::now() - start < 4s);
    }
}

TEST_CASE("fetcher: crawl visits each page exactly once", "[http][integration]") {
    for (const std::string& mode : kModes) {
        INFO(mode);
        Testd t({"--site-pages", "30"});
        RunResult r =
            fetcher({"--mode", mode, "--concurrency", "4", "--crawl", t.url("/site/page/0")});
        REQUIRE(r.exit_code == 0);
        auto lines = stable_lines(r.out, true);
        REQUIRE(lines.size() == 32);  // 30 pages, /site/missing, the summary
        std::set<std::string> urls;
        for (const auto& l : lines) {
            if (!l.starts_with("summary:")) urls.insert(l.substr(0, l.find(' ')));
        }
        CHECK(urls.size() == 31);
        for (int k = 0; k < 30; ++k)
            CHECK(urls.count(t.url("/site/page/" + std::to_string(k))) == 1);
        CHECK(urls.count(t.url("/site/missing")) == 1);
        CHECK(r.out.find("other.invalid") == std::string::npos);
        CHECK(t.stats()["requests"] == 31);  // the server saw each once
    }
    // --max-pages bounds the crawl.
    Testd t({"--site-pages", "30"});
    RunResult r = fetcher({"--crawl", t.url("/site/page/0"), "--max-pages", "5"});
    CHECK(stable_lines(r.out).size() == 6);
    CHECK(t.stats()["requests"] == 5);
}

TEST_CASE("fetcher: -i FILE, -o DIR, timeouts and usage errors", "[http][integration]") {
    Testd t;
    char tmpl[] = "/tmp/iolab-fetch-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    {
        std::ofstream list(dir + "/urls.txt");
        list << "# a comment\n"
             << t.url("/bytes/1000") << "\n\n  " << t.url("/chunked/2000") << "\r\n";
    }
    for (const std::string& mode : kModes) {
        INFO(mode);
        const std::string out = dir + "/out-" + mode;
        RunResult r = fetcher({"--mode", mode, "-i", dir + "/urls.txt", "-o", out});
        REQUIRE(r.exit_code == 0);
        CHECK(stable_lines(r.out).size() == 3);
        CHECK(read_file(out + "/0000_bytes_1000") == pattern(1000));
        CHECK(read_file(out + "/0001_chunked_2000") == pattern(2000));
        std::remove((out + "/0000_bytes_1000").c_str());
        std::remove((out + "/0001_chunked_2000").c_str());
        ::rmdir(out.c_str());

        auto start = std::chrono::steady_clock::now();
        RunResult slow = fetcher({"--mode", mode, "--timeout", "0.5", t.url("/delay/5000")});
        CHECK(slow.exit_code == 3);
        CHECK(slow.out.find("timed out") != std::string::npos);
        CHECK(std::chrono::steady_clock::now() - start < 4s);

        RawServer bad({{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"}});
        RunResult trunc = fetcher({"--mode", mode, bad.url()});
        CHECK(trunc.exit_code == 3);
        CHECK(trunc.out.find("after 5 of 10 body bytes") != std::string::npos);
    }
    std::remove((dir + "/urls.txt").c_str());
    ::rmdir(tmpl);
    CHECK(fetcher({}).exit_code == 2);
    CHECK(fetcher({"not a url"}).exit_code == 2);
    CHECK(fetcher({"--mode", "fibers", t.url("/")}).exit_code == 2);
    CHECK(fetcher({"-i", "/nonexistent/urls"}).exit_code == 2);
}
