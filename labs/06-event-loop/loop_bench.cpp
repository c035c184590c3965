// loop-bench — two costs of this lab's event loop, for scripts/bench-event-loop.sh.
//
// Usage: loop-bench --timers N | --executor N
//
//   --timers N    schedules N call_at timers with deadlines spread over 50 ms
//                 in a scrambled order (so the heap does real work), runs the
//                 loop until every one has fired, and prints the CPU time of
//                 the whole thing (CLOCK_PROCESS_CPUTIME_ID):
//                   timers=1000000 fired=1000000 cpu_s=0.41 wall_s=0.43
//   --executor N  N round trips, one after another: run_in_executor(no-op),
//                 then the result back on the loop (eventfd wake-up, ready
//                 queue, done-callback). Prints the latency percentiles:
//                   executor_roundtrips=20000 p50_us=12.1 p99_us=40.3

#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/program.hpp"
#include "labs/06-event-loop/loop.hpp"

namespace {

using namespace evloop;

double cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int timers(std::size_t n) {
    EventLoop loop;
    std::size_t fired = 0;
    const double cpu0 = cpu_seconds();
    const auto t0 = Clock::now();
    loop.reserve_timers(n);  // the count is known: one allocation per table
    const auto base = loop.time() + std::chrono::milliseconds(1);
    for (std::size_t i = 0; i < n; ++i) {
        // i * 7919 mod 50000: a permutation of microsecond offsets in 50 ms.
        const auto offset = std::chrono::microseconds((i * 7919) % 50000);
        loop.call_at(base + offset, [&fired] { ++fired; });
    }
    loop.run_until([&] { return fired == n; });
    const double cpu = cpu_seconds() - cpu0;
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("timers=%zu fired=%zu cpu_s=%.3f wall_s=%.3f\n", n, fired, cpu, wall);
    return fired == n ? 0 : 1;
}

int executor(std::size_t n) {
    EventLoop loop(1);
    std::vector<double> us;
    us.reserve(n);
    loop.run_until_complete(loop.run_in_executor([] { return 0; }));  // start the pool
    for (std::size_t i = 0; i < n; ++i) {
        const auto t0 = Clock::now();
        loop.run_until_complete(loop.run_in_executor([] { return 1; }));
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::printf("executor_roundtrips=%zu p50_us=%.1f p99_us=%.1f\n", n, us[n / 2],
                us[n * 99 / 100]);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t n_timers = 0, n_exec = 0;
    CLI::App app{"Measure the event loop: timers scheduled and fired, executor round trips"};
    iolab::setup_program(app, "loop-bench",
                         "Exit codes:\n  0  done\n  1  internal error\n  2  usage error");
    auto* t = app.add_option("--timers", n_timers, "Schedule and fire N timers")
                  ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
    auto* e = app.add_option("--executor", n_exec, "N executor round trips")
                  ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
    t->excludes(e);
    IOLAB_PARSE(app, argc, argv);
    if (n_timers == 0 && n_exec == 0) return iolab::usage_error(app, "--timers or --executor");
    return iolab::guarded_main("loop-bench",
                               [&] { return n_timers ? timers(n_timers) : executor(n_exec); });
}
