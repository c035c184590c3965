// fetcher: many URLs fetched concurrently in four styles, one HTTP parser.
// The pieces every mode shares: options, results, the job coordinator (URL
// list or crawl frontier), link extraction, and the response parser setup.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/http.hpp"

namespace fetcher {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string mode = "callbacks";  // callbacks | coroutines | threads | sequential
    std::size_t concurrency = 10;    // requests in flight at most
    std::size_t threads = 8;         // --mode threads: pool size
    double timeout = 10;             // seconds per request (resolve + connect + transfer)
    std::string out_dir;             // -o DIR: save bodies
    std::string crawl;               // --crawl URL
    std::size_t max_pages = 100;     // --crawl: distinct URLs fetched at most
    std::string user_agent = std::string("iolab-fetcher/") + IOLAB_VERSION;
    uint64_t max_body = uint64_t{64} << 20;  // a body kept (crawl, -o) or counted
    bool as_completed = false;               // print each result as it finishes

    [[nodiscard]] std::chrono::milliseconds timeout_ms() const {
        return std::chrono::milliseconds(static_cast<long>(timeout * 1000));
    }
    [[nodiscard]] bool keep_bodies() const { return !out_dir.empty() || !crawl.empty(); }
};

struct Job {
    std::size_t index = 0;  // input order (or discovery order when crawling)
    iolab::http::Url url;
};

struct Result {
    std::string url;
    int status = 0;  // 0 when error is set
    uint64_t bytes = 0;
    double ms = 0;
    std::string error;  // "connect 127.0.0.1:1: Connection refused", ...
    std::string content_type;
    std::string body;  // only when Options::keep_bodies()
    // A response arrived (whatever its status).
    [[nodiscard]] bool answered() const { return error.empty(); }
    // A response with a status below 400: what the summary counts as ok.
    [[nodiscard]] bool ok() const { return answered() && status < 400; }
};

// The output line of one result (with its newline):
//     URL status=200 bytes=10 ms=1.2
//     URL error="connect 127.0.0.1:1: Connection refused" ms=0.1
std::string format_result(const Result& r);

// Hands out jobs and collects results. Thread-safe: the threads mode calls it
// from every worker; the event-loop modes from their one thread.
class Coordinator {
  public:
    Coordinator(const Options& opts, const std::vector<iolab::http::Url>& urls);

    // A queued job, if any (non-blocking).
    std::optional<Job> next();
    // Waits for a job; nullopt once nothing is queued and nothing is being
    // fetched (so no new job can appear).
    std::optional<Job> next_wait();
    // Records the result; when crawling, queues the page's new same-host links.
    void complete(const Job& job, Result result);
    // Nothing queued and nothing outstanding.
    [[nodiscard]] bool finished();

    std::vector<Result> take_results();

  private:
    void enqueue_locked(const iolab::http::Url& url);

    const Options& opts_;
    std::mutex mu_;
    std::condition_variable changed_;
    std::deque<Job> queue_;
    std::size_t outstanding_ = 0;
    std::size_t created_ = 0;
    std::set<std::string> seen_;
    std::string crawl_authority_;
    std::vector<Result> results_;
};

// Every href="..." (or '...', or unquoted) in an HTML text, as written.
std::vector<std::string> extract_links(std::string_view html);

// The response parser every mode uses, set up for this run: bodies kept only
// when needed (bounded by max_body), otherwise just counted.
iolab::http::ResponseParser make_parser(const Options& opts);
// Fills result from a finished parser.
void take_response(iolab::http::ResponseParser& parser, Result& result);

// The four engines. Each runs every job of the coordinator.
void run_callbacks(const Options& opts, Coordinator& coord);
void run_coroutines(const Options& opts, Coordinator& coord);
void run_threads(const Options& opts, Coordinator& coord);
void run_sequential(const Options& opts, Coordinator& coord);

// A blocking fetch (threads, sequential): getaddrinfo, connect, send, recv
// under poll() with the request's deadline.
Result blocking_fetch(const Options& opts, const iolab::http::Url& url);

double ms_since(Clock::time_point start);

}  // namespace fetcher
