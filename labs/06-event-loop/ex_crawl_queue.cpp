// ex-crawl-queue — write it yourself: a crawler with a work queue and N
// workers (lab 06, stage 5).
//
// Usage: ex-crawl-queue [-w N] [--max-pages N] [--server-delay MS] [--timeout SEC] URL
//
// loop-crawl goes level by level: a level's pages are fetched together and
// awaited with gather(), so the next level starts only when the slowest page
// of this one is in — one slow page idles every permit. Here there are no
// levels: N worker coroutines take URLs from one queue (AsyncQueue,
// combinators.hpp), fetch them, and put the new links they find back on it.
// Nobody waits for a level; the N workers are the bound on concurrency (no
// semaphore); a seen set makes each page fetched once.
//
// When is the crawl over? Not when the queue is empty: a worker still
// fetching a page may be about to put ten more links. It is over when the
// queue is empty AND no worker is busy — which is what the queue's join()
// waits for: every item put has been marked task_done(). So a worker puts
// the links it found *before* it marks its page done. run() then destroys
// the workers, parked in get() (cancellation is destruction, task.hpp).
//
// The queue is bounded, by --max-pages: the seen set never admits more URLs
// than that, so a worker's put() can never find it full. A smaller bound
// could deadlock: every worker waiting to put, none left to get.
//
// The queue here (WorkQueue below) is AsyncQueue with asyncio's join(): the
// task_done() that brings the count of unfinished items to zero releases the
// joiner, which does not look again. A worker that marks its page done
// before it puts the page's links ends the crawl after that page.
//
// Yours is worker() below (the TODO). Until you write it the workers return
// at once, the first URL stays unfinished, and the program says so (exit 3)
// instead of waiting forever. Last, the program prints its own verdict:
// "check: PASS — ..." or "check: FAIL — what is wrong" (scripts/lab.sh's
// lab_check prints it): the crawl cut short by an early join(), workers
// that all wait for a URL while items are never marked done (a forgotten
// task_done(): the crawl could never end), workers that returned.
//
// --server-delay MS: before each page, a GET /delay/MS on the same server,
// as loop-crawl does — so that http-testd's /stats (max_in_flight) shows how
// many fetches the workers hold at once: N.
//
// Output: one line per page (`URL status=200 bytes=N` or `URL error="..."`),
// then `summary: pages=N ok=N http_errors=N failed=N workers=N queue_peak=N`.

#include <CLI/CLI.hpp>
#include <coroutine>
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
    std::size_t workers = 4;
    std::size_t max_pages = 1000;
    int server_delay_ms = 0;
};

// The crawl's work queue: an AsyncQueue (combinators.hpp) whose join() is
// asyncio's — released once by the task_done() that reaches zero, no second
// look (asyncio: an Event set by task_done, cleared by put, awaited by join).
// It also notices a crawl that can never end: every worker waiting in get(),
// nothing queued, and items still not marked done.
class WorkQueue {
  public:
    WorkQueue(EventLoop& loop, std::size_t capacity, std::size_t workers)
        : loop_(loop), q_(loop, capacity), workers_(workers) {}
    ~WorkQueue() { release_.cancel(); }
    WorkQueue(const WorkQueue&) = delete;

    bool try_put(Url u) { return q_.try_put(std::move(u)); }
    Task<void> put(Url u) { return q_.put(std::move(u)); }
    Task<Url> get() {
        if (++idle_ == workers_ && q_.empty() && q_.unfinished() > 0) {
            stuck_ = true;  // nobody left to put a URL or to mark one done
            loop_.stop();
        }
        Url u = co_await q_.get();
        --idle_;
        co_return u;
    }
    void task_done() {
        q_.task_done();
        if (q_.unfinished() == 0 && joiner_) {
            release_ = loop_.call_soon([c = joiner_] { c.resume(); });
            joiner_ = {};
        }
    }
    Task<void> join() {
        if (q_.unfinished() > 0) co_await Released{*this};
    }

    [[nodiscard]] std::size_t unfinished() const noexcept { return q_.unfinished(); }
    [[nodiscard]] std::size_t peak() const noexcept { return q_.peak(); }
    [[nodiscard]] bool stuck() const noexcept { return stuck_; }

  private:
    struct Released {
        WorkQueue& q;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> c) noexcept { q.joiner_ = c; }
        void await_resume() const noexcept {}
        ~Released() { q.joiner_ = {}; }  // destroyed while waiting: forget it
    };

    EventLoop& loop_;
    AsyncQueue<Url> q_;
    std::size_t workers_;
    std::size_t idle_ = 0;  // workers waiting in get()
    bool stuck_ = false;
    std::coroutine_handle<> joiner_{};
    Handle release_{};
};

class QueueCrawler {
  public:
    QueueCrawler(EventLoop& loop, const Config& cfg, const Url& start)
        : loop_(loop),
          cfg_(cfg),
          queue_(loop, cfg.max_pages, cfg.workers),
          authority_(start.scheme + "://" + start.authority()) {
        seen_.insert(start.to_string());
        queue_.try_put(start);
    }

    // The crawl: N workers, and join() to know when they are all done.
    Task<void> run() {
        for (std::size_t i = 0; i < cfg_.workers; ++i) {
            workers_.push_back(supervised(i));
            workers_.back().start(loop_);
        }
        co_await queue_.join();  // the queue is empty and no worker is busy
        workers_.clear();        // cancel the workers, each parked in get()
        left_at_join_ = queue_.unfinished();
        std::printf(
            "summary: pages=%zu ok=%zu http_errors=%zu failed=%zu workers=%zu "
            "queue_peak=%zu\n",
            pages_, ok_, answered_ - ok_, pages_ - answered_, cfg_.workers, queue_.peak());
        std::fflush(stdout);
    }

    [[nodiscard]] bool all_answered() const noexcept { return answered_ == pages_; }
    // Every worker returned while URLs were still unfinished: run() would
    // wait for ever.
    [[nodiscard]] bool abandoned() const noexcept { return abandoned_; }
    [[nodiscard]] std::size_t unfinished() const noexcept { return queue_.unfinished(); }
    // join() returned with this many URLs still queued or being fetched.
    [[nodiscard]] std::size_t left_at_join() const noexcept { return left_at_join_; }
    [[nodiscard]] bool stuck() const noexcept { return queue_.stuck(); }
    [[nodiscard]] std::size_t pages() const noexcept { return pages_; }
    [[nodiscard]] std::size_t failed() const noexcept { return pages_ - answered_; }

  private:
    // One worker: take a URL, fetch it, record it, queue its new links,
    // mark it done; again, until run() destroys the worker.
    Task<void> worker(std::size_t id) {
        (void)id;
        // TODO(you): loop for ever: `Url url = co_await queue_.get();`, then
        // `fetch::Result r = co_await fetch_page(url);`, then for each link
        // that record(r) returns, `co_await queue_.put(link)`, and only then
        // `queue_.task_done()` — before it, join() could see an empty queue
        // and no busy worker while this page's links are still to come
        // (LAB.md § Stage 5: a crawler with a work queue and N workers).
        co_return;
    }

    // A worker that returns (it should not) is noted; when the last one has
    // returned and URLs are still unfinished, the loop is stopped.
    Task<void> supervised(std::size_t id) {
        co_await worker(id);
        if (++returned_ == cfg_.workers && queue_.unfinished() > 0) {
            abandoned_ = true;
            loop_.stop();
        }
    }

    // One page: the optional /delay first, then the page itself.
    Task<fetch::Result> fetch_page(Url url) {
        if (cfg_.server_delay_ms > 0) {
            Url slow = url;
            slow.target = "/delay/" + std::to_string(cfg_.server_delay_ms);
            co_await fetch::fetch_one(loop_, slow, cfg_.fetch);
        }
        co_return co_await fetch::fetch_one(loop_, url, cfg_.fetch);
    }

    // Prints the page; returns its links not seen before (marked seen now),
    // never letting the seen set grow past --max-pages.
    std::vector<Url> record(const fetch::Result& r) {
        std::printf("%s\n", fetch::result_line(r).c_str());
        std::fflush(stdout);
        ++pages_;
        ok_ += r.ok();
        answered_ += r.answered();
        std::vector<Url> fresh;
        for (Url& u : fetch::page_links(r, authority_)) {
            if (seen_.size() >= cfg_.max_pages) break;
            if (seen_.insert(u.to_string()).second) fresh.push_back(std::move(u));
        }
        return fresh;
    }

    EventLoop& loop_;
    const Config& cfg_;
    WorkQueue queue_;
    std::string authority_;
    std::set<std::string> seen_;  // every URL ever queued: each page once
    std::vector<Task<void>> workers_;
    std::size_t returned_ = 0;
    bool abandoned_ = false;
    std::size_t left_at_join_ = 0;
    std::size_t pages_ = 0, ok_ = 0, answered_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    std::string start_text;
    CLI::App app{"Write it yourself: crawl one site with a work queue and N worker coroutines"};
    iolab::setup_program(app, "ex-crawl-queue",
                         "Exit codes:\n  0  every page answered (any status)\n"
                         "  1  internal error\n  2  usage error\n"
                         "  3  check: FAIL (some page failed, the crawl was cut short, or it could "
                         "never end)");
    app.add_option("-w,--workers", cfg.workers, "Worker coroutines (fetches in flight at most)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
        ->capture_default_str();
    fetch::add_crawl_options(app, cfg.max_pages, cfg.server_delay_ms, cfg.fetch.timeout,
                             start_text);
    IOLAB_PARSE(app, argc, argv);
    Url start;
    if (const int rc = fetch::parse_crawl_start(app, start_text, start); rc != 0) return rc;
    cfg.fetch.keep_body = true;  // the links are in the body
    return iolab::guarded_main("ex-crawl-queue", [&] {
        iolab::ignore_sigpipe();
        EventLoop loop;
        QueueCrawler crawler(loop, cfg, start);
        Task<void> crawl = crawler.run();
        crawl.start(loop);
        loop.run_until([&] { return crawl.done() || crawler.abandoned() || crawler.stuck(); });
        std::string fail;
        if (crawler.stuck())
            fail = "all " + std::to_string(cfg.workers) +
                   " workers wait for a URL, none is queued, and " +
                   std::to_string(crawler.unfinished()) +
                   " URL(s) were never marked task_done(): join() would wait for ever";
        else if (!crawl.done())
            fail = "every worker returned with " + std::to_string(crawler.unfinished()) +
                   " URL(s) still unfinished (queued, or taken and never marked task_done): a "
                   "worker loops for ever, and run() destroys it";
        if (fail.empty()) {
            crawl.result();  // rethrows what the crawl threw
            if (crawler.left_at_join() > 0)
                fail = "join() returned after " + std::to_string(crawler.pages()) +
                       " page(s) with " + std::to_string(crawler.left_at_join()) +
                       " URL(s) still queued or being fetched: a page was marked task_done() "
                       "before its links were put";
            else if (!crawler.all_answered())
                fail = std::to_string(crawler.failed()) + " page(s) got no answer";
        }
        if (!fail.empty()) {
            std::printf("check: FAIL — %s\n", fail.c_str());
            return 3;
        }
        std::printf("check: PASS — %zu pages, each fetched once and answered, %zu workers\n",
                    crawler.pages(), cfg.workers);
        return 0;
    });
}
