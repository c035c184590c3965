// loop-fetch — many HTTP GETs at once on the hand-written event loop, as
// callbacks (fetch_callbacks.cpp: the course notes' Fetcher) or, with
// --coroutines, as coroutines (fetch_coroutines.cpp). Same output either way.
//
// Usage: loop-fetch [--coroutines] [-c N] [--timeout SEC] URL...
//
// One line per URL, in the order given, then a summary:
//   http://127.0.0.1:8080/bytes/10 status=200 bytes=10
//   http://127.0.0.1:1/ error="connect 127.0.0.1:1: Connection refused"
//   summary: urls=2 ok=1 http_errors=0 failed=1 bytes=10
// ok: a status below 400; http_errors: a response of 400 and above (an
// answer); failed: no response. Exit 3 when some URL failed.
// The elapsed time goes to stderr ("elapsed: 0.203 s"), so that the stdout of
// the two styles can be compared with diff.

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "common/io.hpp"
#include "common/program.hpp"
#include "labs/06-event-loop/fetch_common.hpp"

int main(int argc, char** argv) {
    fetch::Options opts;
    bool coroutines = false;
    std::vector<std::string> url_texts;
    CLI::App app{"Fetch URLs concurrently on a hand-written epoll event loop"};
    iolab::setup_program(app, "loop-fetch",
                         "Exit codes:\n  0  every URL answered (any status)\n"
                         "  1  internal error\n  2  usage error\n  3  some URL failed");
    app.add_flag("--coroutines", coroutines, "Coroutines instead of callbacks");
    app.add_option("-c,--concurrency", opts.concurrency, "Requests in flight at most")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10000}))
        ->capture_default_str();
    app.add_option("--timeout", opts.timeout, "Seconds per request")
        ->check(CLI::Range(0.001, 3600.0))
        ->capture_default_str();
    app.add_option("urls", url_texts, "http:// URLs")->required();
    IOLAB_PARSE(app, argc, argv);

    std::vector<iolab::http::Url> urls;
    for (const auto& text : url_texts) {
        try {
            urls.push_back(iolab::http::parse_url(text));
        } catch (const iolab::http::UrlError& e) {
            return iolab::usage_error(app, text + ": " + e.what());
        }
        if (urls.back().scheme != "http") return iolab::usage_error(app, text + ": http only");
    }
    return iolab::guarded_main("loop-fetch", [&] {
        iolab::ignore_sigpipe();
        evloop::EventLoop loop;
        const auto start = std::chrono::steady_clock::now();
        std::vector<fetch::Result> results = coroutines
                                                 ? fetch::fetch_all_coroutines(loop, urls, opts)
                                                 : fetch::fetch_all_callbacks(loop, urls, opts);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::size_t ok = 0;
        std::size_t answered = 0;
        uint64_t bytes = 0;
        for (const auto& r : results) {
            std::printf("%s\n", fetch::result_line(r).c_str());
            ok += r.ok();
            answered += r.answered();
            bytes += r.bytes;
        }
        std::printf("summary: urls=%zu ok=%zu http_errors=%zu failed=%zu bytes=%llu\n",
                    results.size(), ok, answered - ok, results.size() - answered,
                    static_cast<unsigned long long>(bytes));
        std::fflush(stdout);
        std::fprintf(stderr, "elapsed: %.3f s\n", secs);
        return answered == results.size() ? 0 : 3;
    });
}
