// Integration tests of fetcher: every mode against http-testd over loopback
// (same results, the concurrency bound, overlapping waits, the crawl, -i FILE,
// --as-completed), plus a scripted raw server for a truncated response.
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

nlohmann::json stats(Testd& t) {
    return nlohmann::json::parse(t.stats_text());
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
        CHECK(r.exit_code == 3);  // two URLs fail, one is a 404
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
        CHECK(lines[2] == t.url("/status/404") + " status=404 bytes=11");
        // A 404 is an answer, not a failure: it has its own count, and failed
        // counts only the two URLs that got no response.
        CHECK(lines.back() ==
              "summary: urls=11 ok=8 http_errors=1 failed=2 bytes=" + std::to_string(sum));
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
        auto s = stats(t);
        CHECK(s["requests"] == 12);
        CHECK(s["max_in_flight"] == (mode == "sequential" ? 1 : 3));
    }
    // Threads: the pool is the tighter bound when smaller.
    Testd t;
    std::vector<std::string> args = {"--mode", "threads", "--concurrency", "10", "--threads", "2"};
    for (int i = 0; i < 6; ++i)
        args.push_back(t.url("/delay/250"));
    REQUIRE(fetcher(args).exit_code == 0);
    CHECK(stats(t)["max_in_flight"] == 2);
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
        // Ten 500 ms waits one after another would take 5 s; overlapped about
        // 0.5 s, plus the start-up of a sanitized build on a busy machine.
        CHECK(std::chrono::steady_clock::now() - start < 4500ms);
    }
}

TEST_CASE("fetcher: crawl visits each page exactly once", "[http][integration]") {
    for (const std::string& mode : kModes) {
        INFO(mode);
        Testd t({"--site-pages", "30"});
        RunResult r =
            fetcher({"--mode", mode, "--concurrency", "4", "--crawl", t.url("/site/page/0")});
        CHECK(r.exit_code == 0);  // /site/missing is a 404: an answer, not a failure
        CHECK(r.out.find(" ok=30 http_errors=1 failed=0 ") != std::string::npos);
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
        CHECK(stats(t)["requests"] == 31);  // the server saw each once
    }
    // --max-pages bounds the crawl.
    Testd t({"--site-pages", "30"});
    RunResult r = fetcher({"--crawl", t.url("/site/page/0"), "--max-pages", "5"});
    CHECK(stable_lines(r.out).size() == 6);
    CHECK(stats(t)["requests"] == 5);
}

TEST_CASE("fetcher: -i FILE, -o DIR, timeouts and usage errors", "[http][integration]") {
    Testd t;
    char tmpl[] = "/tmp/iolab-fetch-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    {
        std::ofstream list(dir + "/urls.txt");
        list << "# a comment\n"
             << t.url("/bytes/1000") << "   # a note after the URL\n\n  " << t.url("/chunked/2000")
             << "\t# another\r\n"
             << "   # an indented comment\n";
    }
    for (const std::string& mode : kModes) {
        INFO(mode);
        const std::string out = dir + "/out-" + mode;
        RunResult r = fetcher({"--mode", mode, "-i", dir + "/urls.txt", "-o", out});
        REQUIRE(r.exit_code == 0);
        auto lines = stable_lines(r.out);
        REQUIRE(lines.size() == 3);
        // The comment is not part of the URL (no "%20" or "#" requested).
        CHECK(lines[0] == t.url("/bytes/1000") + " status=200 bytes=1000");
        CHECK(lines[1] == t.url("/chunked/2000") + " status=200 bytes=2000");
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
    CHECK(fetcher({}).exit_code == 2);
    CHECK(fetcher({"not a url"}).exit_code == 2);
    CHECK(fetcher({"--mode", "fibers", t.url("/")}).exit_code == 2);
    CHECK(fetcher({"-i", "/nonexistent/urls"}).exit_code == 2);
    {
        std::ofstream two(dir + "/two.txt");
        two << t.url("/bytes/1") << " " << t.url("/bytes/2") << "\n";
    }
    RunResult two = fetcher({"-i", dir + "/two.txt"});
    CHECK(two.exit_code == 2);
    CHECK(two.err.find("two.txt:1: more than one word") != std::string::npos);
    std::remove((dir + "/two.txt").c_str());
    ::rmdir(tmpl);
}

TEST_CASE("fetcher: --as-completed prints in completion order, the default in input order",
          "[http][integration]") {
    Testd t;
    // Input order: slow, fast, middle. Completion order: fast, middle, slow.
    const std::vector<std::string> urls = {t.url("/delay/900"), t.url("/delay/10"),
                                           t.url("/delay/400")};
    auto url_order = [](const std::string& out) {
        std::vector<std::string> order;
        for (const auto& l : stable_lines(out)) {
            if (!l.starts_with("summary:")) order.push_back(l.substr(0, l.find(' ')));
        }
        return order;
    };
    for (const std::string& mode :
         {std::string("callbacks"), std::string("coroutines"), std::string("threads")}) {
        INFO(mode);
        std::vector<std::string> args = {"--mode", mode, "-c", "3", "--threads", "3"};
        args.insert(args.end(), urls.begin(), urls.end());
        RunResult in_order = fetcher(args);
        REQUIRE(in_order.exit_code == 0);
        CHECK(url_order(in_order.out) == urls);
        args.push_back("--as-completed");
        RunResult done = fetcher(args);
        REQUIRE(done.exit_code == 0);
        CHECK(url_order(done.out) == std::vector<std::string>{urls[1], urls[2], urls[0]});
        CHECK(stable_lines(done.out).back() == stable_lines(in_order.out).back());
    }
    // Sequential: completion order is input order.
    std::vector<std::string> args = {"--mode", "sequential", "--as-completed"};
    args.insert(args.end(), urls.begin(), urls.end());
    RunResult seq = fetcher(args);
    REQUIRE(seq.exit_code == 0);
    CHECK(url_order(seq.out) == urls);
}
