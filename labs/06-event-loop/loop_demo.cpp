// loop-demo — what an event loop does with time, in four short scenes.
//
// Usage: loop-demo [--part ordering|freeze|executor|lateness|all]
//                  [--block-ms 500] [--load-ms 0]
//
//   ordering  call_soon, call_later and call_at scheduled in a jumbled order:
//             call_soon callbacks run first (next round, FIFO), then timers by
//             deadline — the notes' 12.3 example.
//   freeze    a ticker coroutine ticks every 100 ms; another task makes a
//             blocking call (sleep, as a slow getaddrinfo would) right on the
//             loop thread: no tick for --block-ms. One thread, so one blocked
//             callback blocks everyone.
//   executor  the same blocking call through to_thread (run_in_executor): it
//             runs on a pool thread, the loop goes on, the ticker keeps ticking.
//   lateness  200 timers 5 ms apart; with --load-ms N a callback burns N ms
//             of CPU every 20 ms. A timer cannot fire while a callback runs:
//             its lateness grows with the load.
//
// Each scene ends with KEY=VALUE lines (max_gap_ms=..., lateness_p50_us=...)
// that LAB.md's exercises check.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/program.hpp"
#include "labs/06-event-loop/combinators.hpp"

namespace {

using namespace evloop;
using namespace std::chrono_literals;

struct Config {
    std::string part = "all";
    int block_ms = 500;
    int load_ms = 0;
};

long ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// ---- ordering ---------------------------------------------------------------
void ordering(EventLoop& loop) {
    std::printf("== ordering: call_soon vs call_later / call_at ==\n");
    const auto t0 = loop.time();
    auto say = [&](const char* what) {
        return
            [&loop, t0, what] { std::printf("+%3ld ms  %s\n", ms_between(t0, loop.time()), what); };
    };
    // Scheduled in this order ...
    loop.call_later(200ms, say("call_later(200 ms)"));
    loop.call_at(t0 + 100ms, say("call_at(now + 100 ms)"));
    loop.call_later(0ms, say("call_later(0)"));
    loop.call_soon(say("call_soon #1"));
    loop.call_at(t0 + 100ms, say("call_at(now + 100 ms), scheduled second"));
    loop.call_soon(say("call_soon #2"));
    loop.call_later(250ms, [&loop] { loop.stop(); });
    // ... they run in this one: the soon ones (FIFO), then by deadline, and
    // equal deadlines in the order they were scheduled.
    loop.run_forever();
}

// ---- freeze and executor --------------------------------------------------------
// Ticks every 100 ms until `stop`; records the longest gap between two ticks.
Task<void> ticker(EventLoop& loop, const bool& stop, long& max_gap) {
    auto last = loop.time();
    int n = 0;
    while (!stop) {  // `stop` is set by with_ticker() while this task sleeps
        ++n;
        co_await sleep(loop, 100ms);
        const auto now = loop.time();
        max_gap = std::max(max_gap, ms_between(last, now));
        std::printf("  tick %d (+%ld ms since the last)\n", n, ms_between(last, now));
        std::fflush(stdout);
        last = now;
    }
}

// A blocking call: the thread sleeps in the kernel (nanosleep), as it would
// in a slow getaddrinfo or a read from a slow disk.
void blocking_call(int ms) {
    ::usleep(static_cast<useconds_t>(ms) * 1000);
}

Task<void> blocking_on_the_loop(EventLoop& loop, int ms) {
    co_await sleep(loop, 250ms);
    std::printf("  blocking call on the loop thread (%d ms)...\n", ms);
    blocking_call(ms);  // nothing else runs meanwhile
    std::printf("  ...returned\n");
    co_await sleep(loop, 250ms);
}

Task<void> blocking_in_executor(EventLoop& loop, int ms) {
    co_await sleep(loop, 250ms);
    std::printf("  blocking call on the executor (%d ms)...\n", ms);
    co_await to_thread(loop, [ms] { blocking_call(ms); });  // the loop goes on
    std::printf("  ...returned\n");
    co_await sleep(loop, 250ms);
}

void with_ticker(EventLoop& loop, const char* title, Task<void> work) {
    std::printf("== %s ==\n", title);
    bool stop = false;
    long max_gap = 0;
    Task<void> tick = ticker(loop, stop, max_gap);
    tick.start(loop);
    run_until_complete(loop, work);
    stop = true;
    run_until_complete(loop, tick);  // its last tick
    std::printf("max_gap_ms=%ld\n", max_gap);
}

// ---- lateness -------------------------------------------------------------------
void lateness(EventLoop& loop, int load_ms) {
    std::printf("== lateness: 200 timers 5 ms apart, %d ms of CPU every 20 ms ==\n", load_ms);
    std::vector<long> late_us;
    const auto t0 = loop.time() + 10ms;
    for (int i = 0; i < 200; ++i) {
        const auto due = t0 + i * 5ms;
        loop.call_at(due, [&loop, &late_us, due] {
            late_us.push_back(
                std::chrono::duration_cast<std::chrono::microseconds>(loop.time() - due).count());
        });
    }
    const auto end = t0 + 200 * 5ms;
    std::function<void()> burn = [&] {
        const auto until = loop.time() + std::chrono::milliseconds(load_ms);
        while (loop.time() < until) {
        }  // a CPU-bound callback: the loop cannot do anything else
        if (loop.time() < end) loop.call_later(20ms, burn);
    };
    if (load_ms > 0) loop.call_later(3ms, burn);
    loop.call_at(end + 50ms, [&loop] { loop.stop(); });
    loop.run_forever();
    std::sort(late_us.begin(), late_us.end());
    std::printf("timers=%zu\n", late_us.size());
    std::printf("lateness_p50_us=%ld\n", late_us[late_us.size() / 2]);
    std::printf("lateness_p99_us=%ld\n", late_us[late_us.size() * 99 / 100]);
    std::printf("lateness_max_us=%ld\n", late_us.back());
}

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    CLI::App app{"Scenes of an event loop: ordering, a frozen ticker, the executor, lateness"};
    iolab::setup_program(app, "loop-demo",
                         "Exit codes:\n  0  done\n  1  internal error\n  2  usage error");
    app.add_option("--part", cfg.part, "Which scene")
        ->check(CLI::IsMember({"ordering", "freeze", "executor", "lateness", "all"}))
        ->capture_default_str();
    app.add_option("--block-ms", cfg.block_ms, "Length of the blocking call")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    app.add_option("--load-ms", cfg.load_ms, "CPU burnt every 20 ms in the lateness scene")
        ->check(CLI::Range(0, 19))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("loop-demo", [&] {
        EventLoop loop;
        auto want = [&](const char* p) { return cfg.part == "all" || cfg.part == p; };
        if (want("ordering")) ordering(loop);
        if (want("freeze"))
            with_ticker(loop, "freeze: a blocking call on the loop thread",
                        blocking_on_the_loop(loop, cfg.block_ms));
        if (want("executor"))
            with_ticker(loop, "executor: the same call through run_in_executor",
                        blocking_in_executor(loop, cfg.block_ms));
        if (want("lateness")) lateness(loop, cfg.load_ms);
        return 0;
    });
}
