// ex-call-later — write it yourself: timers for a reactor (lab 06, stage 1).
//
// Usage: ex-call-later [--scale-ms MS]
//
// A reactor small enough to read in one sitting: an epoll descriptor, a FIFO
// of callbacks to run soon, and a heap of timers — the three queues of
// loop.cpp, without anything else. One round (run_once) is:
//
//   epoll_wait(ep, ..., timeout_ms())    sleep until I/O or the next timer
//   move the due timers to the ready queue, earliest first
//   run what is in the ready queue now
//
// Two pieces are yours (the TODOs): call_later(), which must put the callback
// in the heap with its deadline, and timeout_ms(), which tells epoll_wait how
// long it may sleep. Without them the timers never run; with call_later but a
// timeout of 0 they run, but the loop spins through thousands of rounds in
// which nothing happens — a core at 100 % (the rounds= line shows it).
//
// The loop reads the clock once per round (now_, like libuv's uv_now): two
// timers scheduled in the same round with the same delay have the same
// deadline, and must run in the order they were scheduled.
//
// The scene: three timers scheduled out of order (3, 1 and 2 times
// --scale-ms), one call_soon, then four timers D1..D4 all due at 4 times
// --scale-ms. Output: one line per callback as it runs, then
//   order=soon,A,B,C,D1,D2,D3,D4   the order the callbacks ran in
//   first_timer_ms=N      when the first timer (A, due at 1 x scale) ran
//   rounds=N              loop rounds until nothing was left
// and last, the program's own verdict: "check: PASS — ..." or "check:
// FAIL — what is wrong" (scripts/lab.sh's lab_check prints it). The loop
// ends when nothing is scheduled any more.

#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/program.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using Callback = std::function<void()>;

// timeout_ms() said "sleep for ever" while timers wait: epoll_wait would
// never return (no descriptor is watched), so the scene stops here instead.
struct SleepsForever {
    std::size_t timers;
};

class MiniLoop {
  public:
    MiniLoop() : ep_(::epoll_create1(EPOLL_CLOEXEC)), now_(Clock::now()) {
        if (!ep_) iolab::throw_sys("epoll_create1");
    }
    // The loop's time: read once at the start of each round.
    [[nodiscard]] Clock::time_point now() const noexcept { return now_; }

    void call_soon(Callback fn) { ready_.push_back(std::move(fn)); }

    // Runs `fn` once `delay` has passed (in a later round, never before).
    void call_later(Clock::duration delay, Callback fn) {
        // TODO(you): push a Timer{now_ + delay, seq, fn} onto timers_ and keep
        // it a heap with std::push_heap(..., later) — the earliest deadline on
        // top, equal deadlines in scheduling order (next_seq_++)
        // (LAB.md § Stage 1: timers for a reactor).
        (void)delay;
        (void)fn;
    }

    // Runs rounds until no callback and no timer is left.
    void run() {
        while (!ready_.empty() || !timers_.empty())
            run_once();
    }
    [[nodiscard]] unsigned long rounds() const noexcept { return rounds_; }

  private:
    struct Timer {
        Clock::time_point when;
        unsigned long seq;
        Callback fn;
    };
    // For std::push_heap/pop_heap: "a comes after b", so the top is earliest.
    static bool later(const Timer& a, const Timer& b) {
        return a.when != b.when ? a.when > b.when : a.seq > b.seq;
    }

    // How long epoll_wait may sleep, in milliseconds: 0 when callbacks are
    // ready, -1 (forever) when nothing at all is scheduled.
    int timeout_ms() const {
        if (!ready_.empty()) return 0;
        // TODO(you): with timers, sleep until the nearest one,
        // timers_.front().when: the time left rounded UP to whole ms
        // (std::chrono::ceil), never below 0. Rounded down, the loop would
        // wake just before the deadline, find nothing due and spin
        // (LAB.md § Stage 1: timers for a reactor).
        return 0;
    }

    void run_once() {
        ++rounds_;
        epoll_event events[16];
        const int timeout = timeout_ms();
        if (timeout < 0 && !timers_.empty())  // nothing could ever wake us
            throw SleepsForever{timers_.size()};
        const int n = ::epoll_wait(ep_.get(), events, 16, timeout);
        if (n < 0 && errno != EINTR) iolab::throw_sys("epoll_wait");
        // (No descriptors are registered in this scene; loop.cpp's dispatch
        // would call their callbacks here.)
        now_ = Clock::now();
        while (!timers_.empty() && timers_.front().when <= now_) {
            std::pop_heap(timers_.begin(), timers_.end(), later);
            ready_.push_back(std::move(timers_.back().fn));
            timers_.pop_back();
        }
        for (std::size_t k = ready_.size(); k > 0; --k) {  // only what is ready now
            Callback fn = std::move(ready_.front());
            ready_.pop_front();
            fn();
        }
    }

    iolab::Fd ep_;
    Clock::time_point now_;
    std::deque<Callback> ready_;
    std::vector<Timer> timers_;                    // a binary heap
    [[maybe_unused]] unsigned long next_seq_ = 0;  // for call_later (clang: used once you write it)
    unsigned long rounds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    int scale_ms = 100;
    CLI::App app{"Write it yourself: call_later and the epoll_wait timeout of a reactor (lab 06)"};
    iolab::setup_program(
        app, "ex-call-later",
        "Exit codes:\n  0  every callback ran, in order\n  1  internal error\n"
        "  2  usage error\n  3  check: FAIL (a callback did not run, ran out of order "
        "or early, or the loop spun)");
    app.add_option("--scale-ms", scale_ms, "The timers are due at 1, 2, 3 and 4 times this")
        ->check(CLI::Range(1, 10'000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);

    return iolab::guarded_main("ex-call-later", [&] {
        MiniLoop loop;
        const auto t0 = Clock::now();
        std::vector<std::string> ran;
        long first_timer_ms = -1;
        auto cb = [&](const char* name, bool first_timer) {
            return [&, name, first_timer] {
                const long ms = static_cast<long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0)
                        .count());
                std::printf("+%4ld ms  %s\n", ms, name);
                if (first_timer) first_timer_ms = ms;
                ran.emplace_back(name);
            };
        };
        const auto unit = std::chrono::milliseconds(scale_ms);
        loop.call_later(3 * unit, cb("C", false));
        loop.call_later(1 * unit, cb("A", true));
        loop.call_soon(cb("soon", false));
        loop.call_later(2 * unit, cb("B", false));
        for (const char* d : {"D1", "D2", "D3", "D4"})  // one round: the same deadline
            loop.call_later(4 * unit, cb(d, false));
        try {
            loop.run();
        } catch (const SleepsForever& e) {
            std::printf(
                "check: FAIL — timeout_ms() returned -1 (sleep for ever) while %zu "
                "timer(s) wait: epoll_wait would never return\n",
                e.timers);
            return 3;
        }
        std::string order;
        for (const auto& r : ran)
            order += (order.empty() ? "" : ",") + r;
        std::printf("order=%s\nfirst_timer_ms=%ld\nrounds=%lu\n", order.c_str(), first_timer_ms,
                    loop.rounds());
        const std::string want = "soon,A,B,C,D1,D2,D3,D4";
        const std::string tail = order.size() >= 11 ? order.substr(order.size() - 11) : "";
        std::string fail;
        if (order == "soon")
            fail = "only soon ran: call_later() dropped the timers";
        else if (order != want && order.rfind("soon,A,B,C,", 0) == 0 && ran.size() == 8)
            fail = "the four timers due at the same instant ran as " + tail +
                   ": equal deadlines must run in the order they were scheduled (the sequence "
                   "number)";
        else if (order != want)
            fail = "order=" + order + ", not " + want;
        else if (first_timer_ms < scale_ms)
            fail = "A ran after " + std::to_string(first_timer_ms) + " ms, before its " +
                   std::to_string(scale_ms) + " ms";
        else if (loop.rounds() > 50)
            fail = std::to_string(loop.rounds()) +
                   " loop rounds for 8 callbacks: the loop spins — timeout_ms() must sleep "
                   "until the nearest deadline, rounded up";
        if (!fail.empty()) {
            std::printf("check: FAIL — %s\n", fail.c_str());
            return 3;
        }
        std::printf(
            "check: PASS — 8 callbacks in order, the first timer after %ld ms, %lu "
            "rounds\n",
            first_timer_ms, loop.rounds());
        return 0;
    });
}
