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
// The scene: three timers scheduled out of order (3, 1 and 2 times
// --scale-ms) and one call_soon. Output: one line per callback as it runs,
// then
//   order=soon,A,B,C      the order the callbacks ran in
//   first_timer_ms=N      when the first timer (A, due at 1 x scale) ran
//   rounds=N              loop rounds until nothing was left
// The loop ends when nothing is scheduled any more.

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

class MiniLoop {
  public:
    MiniLoop() : ep_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!ep_) iolab::throw_sys("epoll_create1");
    }

    void call_soon(Callback fn) { ready_.push_back(std::move(fn)); }

    // Runs `fn` once `delay` has passed (in a later round, never before).
    void call_later(Clock::duration delay, Callback fn) {
        // TODO(you): push a Timer{deadline, seq, fn} onto timers_ and keep it
        // a heap with std::push_heap(..., later) — the earliest deadline on
        // top, equal deadlines in scheduling order (next_seq_++).
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
        // wake just before the deadline, find nothing due and spin.
        return 0;
    }

    void run_once() {
        ++rounds_;
        epoll_event events[16];
        const int n = ::epoll_wait(ep_.get(), events, 16, timeout_ms());
        if (n < 0 && errno != EINTR) iolab::throw_sys("epoll_wait");
        // (No descriptors are registered in this scene; loop.cpp's dispatch
        // would call their callbacks here.)
        const auto now = Clock::now();
        while (!timers_.empty() && timers_.front().when <= now) {
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
    std::deque<Callback> ready_;
    std::vector<Timer> timers_;                    // a binary heap
    [[maybe_unused]] unsigned long next_seq_ = 0;  // for call_later (clang: used once you write it)
    unsigned long rounds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    int scale_ms = 100;
    CLI::App app{"Write it yourself: call_later and the epoll_wait timeout of a reactor (lab 06)"};
    iolab::setup_program(app, "ex-call-later",
                         "Exit codes:\n  0  every callback ran, in order\n  1  internal error\n"
                         "  2  usage error\n  3  a callback did not run or ran out of order");
    app.add_option("--scale-ms", scale_ms, "The timers are due at 1, 2 and 3 times this")
        ->check(CLI::Range(1, 10'000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);

    return iolab::guarded_main("ex-call-later", [&] {
        MiniLoop loop;
        const auto t0 = Clock::now();
        std::string order;
        long first_timer_ms = -1;
        auto cb = [&](const char* name, bool first_timer) {
            return [&, name, first_timer] {
                const long ms = static_cast<long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0)
                        .count());
                std::printf("+%4ld ms  %s\n", ms, name);
                if (first_timer) first_timer_ms = ms;
                order += (order.empty() ? "" : ",") + std::string(name);
            };
        };
        const auto unit = std::chrono::milliseconds(scale_ms);
        loop.call_later(3 * unit, cb("C", false));
        loop.call_later(1 * unit, cb("A", true));
        loop.call_soon(cb("soon", false));
        loop.call_later(2 * unit, cb("B", false));
        loop.run();
        std::printf("order=%s\nfirst_timer_ms=%ld\nrounds=%lu\n", order.c_str(), first_timer_ms,
                    loop.rounds());
        return order == "soon,A,B,C" ? 0 : 3;
    });
}
