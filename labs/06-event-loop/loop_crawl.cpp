// loop-crawl — a crawler bounded by a semaphore, the course notes' asyncio
// crawler (12.8) on this lab's loop: start from one URL, fetch it, follow its
// links on the same host, each page once, never more than --concurrency
// fetches at a time.
//
// Usage: loop-crawl [-c N] [--max-pages N] [--as-completed] [--server-delay MS]
//                   [--timeout SEC] URL
//
// The crawl goes level by level (breadth first): every page of a level is a
// task; the tasks of a level run together, each first taking a permit of an
// AsyncSemaphore(N) — the bound. Without --as-completed a level is awaited
// with gather() and printed in discovery order; with --as-completed each page
// is printed the moment it finishes (as_completed()), so the order changes
// from run to run and the set of pages does not.
//
// --server-delay MS: each page fetch is preceded, under the same permit, by a
// GET /delay/MS on the same server. http-testd answers /site/ pages at once,
// so its /stats would never see two of them in flight; with the delay,
// max_in_flight in /stats shows how many fetches the crawler really holds.
//
// Output: one line per page (`URL status=200 bytes=N`, or `URL error="..."`),
// then `summary: pages=N ok=N http_errors=N failed=N levels=N` (ok: below 400,
// http_errors: an answer of 400 and above, failed: no answer).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <set>

#include "common/io.hpp"
#include "common/program.hpp"
#include "labs/06-event-loop/combinators.hpp"
#include "labs/06-event-loop/fetch_common.hpp"

namespace {

using namespace evloop;
using iolab::http::Url;

struct Config {
    fetch::Options fetch;
    std::size_t max_pages = 1000;
    bool as_completed = false;
    int server_delay_ms = 0;
};

class Crawler {
  public:
    Crawler(EventLoop& loop, const Config& cfg, const Url& start)
        : loop_(loop),
          cfg_(cfg),
          slots_(loop, cfg.fetch.concurrency),
          authority_(start.scheme + "://" + start.authority()) {
        frontier_.push_back(start);
        seen_.insert(start.to_string());
    }

    Task<void> run() {
        while (!frontier_.empty()) {
            ++levels_;
            std::vector<Task<fetch::Result>> tasks;
            for (const Url& url : std::exchange(frontier_, {}))
                tasks.push_back(fetch_page(url));
            if (cfg_.as_completed) {
                AsCompleted<fetch::Result> done(loop_, std::move(tasks));
                while (!done.empty())
                    record(co_await done.next());  // the order they finish in
            } else {
                std::vector<fetch::Result> all = co_await gather(loop_, std::move(tasks));
                for (const fetch::Result& r : all)
                    record(r);  // the order they were found in
            }
        }
        std::printf("summary: pages=%zu ok=%zu http_errors=%zu failed=%zu levels=%zu\n", pages_,
                    ok_, answered_ - ok_, pages_ - answered_, levels_);
    }

    [[nodiscard]] bool all_answered() const noexcept { return answered_ == pages_; }

  private:
    // One page, holding one of the N permits for the whole fetch.
    Task<fetch::Result> fetch_page(Url url) {
        auto permit = co_await slots_.acquire();
        if (cfg_.server_delay_ms > 0) {
            Url slow = url;
            slow.target = "/delay/" + std::to_string(cfg_.server_delay_ms);
            co_await fetch::fetch_one(loop_, slow, cfg_.fetch);
        }
        co_return co_await fetch::fetch_one(loop_, url, cfg_.fetch);
    }

    // Prints the page and queues its new same-host links for the next level.
    void record(const fetch::Result& r) {
        std::printf("%s\n", fetch::result_line(r).c_str());
        std::fflush(stdout);
        ++pages_;
        ok_ += r.ok();
        answered_ += r.answered();
        for (Url& u : fetch::page_links(r, authority_)) {  // same host, HTML pages only
            if (seen_.size() >= cfg_.max_pages) return;
            if (seen_.insert(u.to_string()).second) frontier_.push_back(std::move(u));
        }
    }

    EventLoop& loop_;
    const Config& cfg_;
    AsyncSemaphore slots_;
    std::string authority_;
    std::vector<Url> frontier_;   // the next level
    std::set<std::string> seen_;  // every URL ever queued: each page once
    std::size_t pages_ = 0, ok_ = 0, answered_ = 0, levels_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    std::string start_text;
    CLI::App app{"Crawl one site on a hand-written event loop, N fetches at a time"};
    iolab::setup_program(app, "loop-crawl",
                         "Exit codes:\n  0  every page answered (any status)\n"
                         "  1  internal error\n  2  usage error\n  3  some page failed");
    app.add_option("-c,--concurrency", cfg.fetch.concurrency, "Fetches in flight at most")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
        ->capture_default_str();
    app.add_flag("--as-completed", cfg.as_completed, "Print each page as it finishes");
    fetch::add_crawl_options(app, cfg.max_pages, cfg.server_delay_ms, cfg.fetch.timeout,
                             start_text);
    IOLAB_PARSE(app, argc, argv);
    Url start;
    if (const int rc = fetch::parse_crawl_start(app, start_text, start); rc != 0) return rc;
    cfg.fetch.keep_body = true;  // the links are in the body
    return iolab::guarded_main("loop-crawl", [&] {
        iolab::ignore_sigpipe();
        EventLoop loop;
        Crawler crawler(loop, cfg, start);
        run_until_complete(loop, crawler.run());
        return crawler.all_answered() ? 0 : 3;
    });
}
