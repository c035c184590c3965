// What loop-fetch's two engines (fetch_callbacks.cpp, fetch_coroutines.cpp)
// and the two crawlers (loop-crawl, ex-crawl-queue) share: options, the
// crawlers' command line, one result line, name resolution off the loop, the
// response parser's setup, and link extraction. Nothing here waits.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"
#include "common/http.hpp"
#include "labs/06-event-loop/loop.hpp"

namespace CLI {
class App;
}
namespace evloop {
template <class T>
class Task;
}

namespace fetch {

struct Options {
    std::size_t concurrency = 10;  // requests in flight at most
    double timeout = 10;           // seconds per request (resolve + connect + transfer)
    bool keep_body = false;        // the crawler needs the page to find its links
    std::string user_agent = std::string("iolab-loop-fetch/") + IOLAB_VERSION;

    [[nodiscard]] std::chrono::milliseconds timeout_ms() const {
        return std::chrono::milliseconds(static_cast<long>(timeout * 1000));
    }
};

struct Result {
    std::string url;
    int status = 0;
    uint64_t bytes = 0;
    std::string error;  // "connect 127.0.0.1:1: Connection refused", ...
    std::string content_type;
    std::string body;  // only with Options::keep_body
    // A response came back (any status: a 404 is an answer) ...
    [[nodiscard]] bool answered() const { return error.empty(); }
    // ... and said yes (below 400).
    [[nodiscard]] bool ok() const { return answered() && status < 400; }
};

// The command line both crawlers (loop-crawl, ex-crawl-queue) share beside
// their concurrency option: --max-pages, --server-delay, --timeout and the
// start URL.
void add_crawl_options(CLI::App& app, std::size_t& max_pages, int& server_delay_ms, double& timeout,
                       std::string& start_text);
// After parsing: the start URL, which must be http://. Returns 0, or the exit
// code of the one-line usage error it printed.
int parse_crawl_start(CLI::App& app, const std::string& start_text, iolab::http::Url& start);

// "URL status=200 bytes=10" or "URL error="..."": the same in every engine.
std::string result_line(const Result& r);
// The error text of a request that ran out of time.
std::string timeout_message(const Options& opts);

// The server's address: at once for a numeric host, otherwise getaddrinfo on
// the executor's threads — a blocking call that must not run on the loop.
evloop::Future<iolab::SockAddr> resolve_async(evloop::EventLoop& loop, const iolab::http::Url& url);

// A socket for `addr`: non-blocking, close-on-exec. Throws SysError.
iolab::Fd new_socket(const iolab::SockAddr& addr);

// The parser for one response: the body is kept only with keep_body.
iolab::http::ResponseParser make_parser(const Options& opts);
// Status, bytes, content type (and body) of a finished response.
void take_response(iolab::http::ResponseParser& p, Result& r);

// Every href="..." ('...', or unquoted) in an HTML text, as written.
std::vector<std::string> extract_links(std::string_view html);

// The links of a fetched page worth following: only for an HTML 200 answer;
// each href resolved against the page's URL (fragment dropped) and kept when
// its scheme://host:port is `authority` (the site being crawled).
std::vector<iolab::http::Url> page_links(const Result& page, const std::string& authority);

// The two engines of loop-fetch: every URL, at most opts.concurrency at once;
// results in the order of `urls`.
std::vector<Result> fetch_all_callbacks(evloop::EventLoop& loop,
                                        const std::vector<iolab::http::Url>& urls,
                                        const Options& opts);
std::vector<Result> fetch_all_coroutines(evloop::EventLoop& loop,
                                         const std::vector<iolab::http::Url>& urls,
                                         const Options& opts);
// One GET as a coroutine, with its timeout; never throws (errors go to
// Result::error). loop-crawl uses it.
evloop::Task<Result> fetch_one(evloop::EventLoop& loop, iolab::http::Url url, const Options& opts);

}  // namespace fetch
