// fetcher — fetch many http:// URLs concurrently, in one of four styles that
// produce the same results, and time them.
//
// Usage: fetcher [--mode callbacks|coroutines|threads|sequential]
//                [--concurrency N] [--threads N] [--timeout SEC] [-o DIR]
//                [--as-completed]
//                (URL... | -i FILE | --crawl URL [--max-pages N])
//
//   callbacks   (default) one thread, libevent's loop, each fetch a state
//               machine of callbacks (callbacks.cpp)
//   coroutines  the same loop, each fetch a C++20 coroutine written as
//               straight-line code over awaitables (coroutines.cpp)
//   threads     a pool of --threads threads making blocking calls (blocking.cpp)
//   sequential  one blocking fetch after another
//
// --concurrency bounds the requests in flight in every mode (a semaphore).
// Name resolution never blocks the loop (evdns); the blocking modes call
// getaddrinfo in their own thread. All four modes parse with common/http.
//
// -i FILE: one URL a line; blank lines and everything from a "#" that starts
// a line or follows whitespace are ignored ("URL  # note" is URL); a line
// with two words is an error.
//
// Output: one line per URL in input order (crawl: discovery order), like a
// map over the URLs; with --as-completed each line as its fetch finishes
// instead, like as_completed (every mode; sequential finishes in input order)
//     http://127.0.0.1:8080/bytes/10 status=200 bytes=10 ms=1.2
//     http://127.0.0.1:1/ error="connect 127.0.0.1:1: Connection refused" ms=0.1
// then
//     summary: mode=callbacks urls=20 ok=18 http_errors=1 failed=1 bytes=200
//              seconds=0.210 pages_per_sec=95.2   (one line)
// Every URL is counted once, by what came back: ok is a response with a
// status below 400; http_errors is a response of 400 and above (an answer:
// the server said "no"); failed is no response at all (refused, reset, timed
// out, unparsable).
// Exit code: 0 when every URL got a response (a 404 is an answer, as with
// curl), 3 when some got none, 2 for a usage error, 1 for an internal error.

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <optional>

#include "clients/fetcher/fetcher.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"

namespace {

using namespace fetcher;

int run(const Options& opts, const std::vector<iolab::http::Url>& urls) {
    iolab::ignore_sigpipe();
    // Every request in flight holds a socket: --concurrency 5000 needs the
    // hard limit, not the soft 1024.
    iolab::raise_nofile_limit();
    Coordinator coord(opts, urls);
    const auto start = Clock::now();
    if (opts.mode == "callbacks") {
        run_callbacks(opts, coord);
    } else if (opts.mode == "coroutines") {
        run_coroutines(opts, coord);
    } else if (opts.mode == "threads") {
        run_threads(opts, coord);
    } else {
        run_sequential(opts, coord);
    }
    const double seconds = ms_since(start) / 1000;
    std::vector<Result> results = coord.take_results();
    uint64_t bytes = 0;
    std::size_t ok = 0;
    std::size_t http_errors = 0;
    std::string out;
    for (const Result& r : results) {
        if (r.ok()) ++ok;
        if (r.answered() && !r.ok()) ++http_errors;
        if (r.answered()) bytes += r.bytes;
        if (!opts.as_completed) out += format_result(r);  // else printed already
    }
    char summary[256];
    std::snprintf(summary, sizeof summary,
                  "summary: mode=%s urls=%zu ok=%zu http_errors=%zu failed=%zu bytes=%llu "
                  "seconds=%.3f pages_per_sec=%.1f\n",
                  opts.mode.c_str(), results.size(), ok, http_errors,
                  results.size() - ok - http_errors, static_cast<unsigned long long>(bytes),
                  seconds, seconds > 0 ? static_cast<double>(results.size()) / seconds : 0.0);
    out += summary;
    auto w = iolab::write_all(1, {out.data(), out.size()});
    if (!w.ok()) return 1;
    return ok + http_errors == results.size() ? 0 : 3;
}

constexpr std::size_t kMaxUrls = 100000;

// Adds one URL; false (after saying why) when it is not one or too many.
bool add_url(std::vector<iolab::http::Url>& urls, const std::string& text) {
    if (urls.size() >= kMaxUrls) {
        iolab::log_line("fetcher: more than " + std::to_string(kMaxUrls) + " URLs");
        return false;
    }
    try {
        urls.push_back(iolab::http::parse_url(text));
        return true;
    } catch (const iolab::http::UrlError& e) {
        iolab::log_line("fetcher: bad URL \"" + text + "\": " + e.what());
        return false;
    }
}

// The URL of one -i line: the line without its comment (a "#" at its start or
// after whitespace) and surrounding blanks; "" for a line with none; nullopt
// (after saying why) for a line holding more than one word.
std::optional<std::string> url_of_line(const std::string& file, std::size_t n, std::string line) {
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
            line.resize(i);
            break;
        }
    }
    const char* blank = " \t\r";
    const std::size_t b = line.find_first_not_of(blank);
    if (b == std::string::npos) return std::string{};
    const std::size_t e = line.find_last_not_of(blank);
    std::string url = line.substr(b, e - b + 1);
    if (url.find_first_of(blank) != std::string::npos) {
        iolab::log_line("fetcher: " + file + ":" + std::to_string(n) +
                        ": more than one word (one URL a line; # starts a comment)");
        return std::nullopt;
    }
    return url;
}

// Reads -i FILE; false (after saying why) on the first problem.
bool read_url_file(const std::string& file, std::vector<iolab::http::Url>& urls) {
    std::ifstream in(file);
    if (!in) {
        iolab::log_line("fetcher: cannot open " + file);
        return false;
    }
    std::string line;
    for (std::size_t n = 1; std::getline(in, line); ++n) {
        if (line.size() > 8192) {
            iolab::log_line("fetcher: " + file + ":" + std::to_string(n) +
                            ": line longer than 8192 bytes");
            return false;
        }
        auto url = url_of_line(file, n, line);
        if (!url) return false;
        if (!url->empty() && !add_url(urls, *url)) return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    Options opts;
    std::vector<std::string> url_args;
    std::string input;
    CLI::App app{
        "fetcher: fetch many http:// URLs concurrently (callbacks, coroutines, threads "
        "or sequential)"};
    app.add_option("URL", url_args, "http:// URLs to fetch");
    app.add_option("-i,--input", input,
                   "A file of URLs, one a line; # starts a comment (at the start of a line "
                   "or after a blank)");
    app.add_option("--mode", opts.mode, "callbacks, coroutines, threads or sequential")
        ->check(CLI::IsMember({"callbacks", "coroutines", "threads", "sequential"}))
        ->capture_default_str();
    app.add_option("-c,--concurrency", opts.concurrency, "Requests in flight at most")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10000}))
        ->capture_default_str();
    app.add_option("--threads", opts.threads, "Threads of --mode threads")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
        ->capture_default_str();
    app.add_option("--timeout", opts.timeout, "Seconds per request")
        ->check(CLI::Range(0.001, 3600.0))
        ->capture_default_str();
    app.add_option("-o,--output-dir", opts.out_dir, "Save each body in DIR (created)");
    app.add_option("--crawl", opts.crawl, "Crawl from URL, following same-host links");
    app.add_option("--max-pages", opts.max_pages, "Crawl: distinct URLs fetched at most")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100000}))
        ->capture_default_str();
    app.add_flag("--as-completed", opts.as_completed,
                 "Print each result as its fetch finishes (default: in input order)");
    app.add_option("--max-body", opts.max_body, "Largest body accepted, in bytes")
        ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 40))
        ->capture_default_str();
    iolab::setup_program(app, "fetcher",
                         "Exit codes: 0 every URL got a response (a 404 is an answer), 3 some "
                         "got none, 2 usage error, 1 internal error.");
    IOLAB_PARSE(app, argc, argv);
    std::vector<iolab::http::Url> urls;
    for (const auto& u : url_args) {
        if (!add_url(urls, u)) return 2;
    }
    if (!input.empty() && !read_url_file(input, urls)) return 2;
    if (!opts.crawl.empty()) {
        try {
            iolab::http::parse_url(opts.crawl);
        } catch (const iolab::http::UrlError& e) {
            iolab::log_line("fetcher: bad --crawl URL: " + std::string(e.what()));
            return 2;
        }
    }
    if (urls.empty() && opts.crawl.empty()) {
        iolab::log_line("fetcher: no URL (give URLs, -i FILE or --crawl URL; --help)");
        return 2;
    }
    if (!opts.out_dir.empty() && ::mkdir(opts.out_dir.c_str(), 0755) != 0 && errno != EEXIST) {
        iolab::log_line("fetcher: " + iolab::sys_message("mkdir", opts.out_dir, errno));
        return 2;
    }
    return iolab::guarded_main("fetcher", [&] { return run(opts, urls); });
}
