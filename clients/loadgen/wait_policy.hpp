// How long loadgen's workers spin before they sleep, when --busy-poll is not
// given (auto): spin 50 µs while the workers have CPUs to themselves, sleep
// at once when a spinning worker would take a CPU that someone else — the
// server, another worker — is waiting for, or when spinning finds nothing.
//
// What spinning does: a worker that looks again and again for events
// (epoll_wait with a zero timeout) catches a reply while still on its CPU,
// so the server's send wakes nobody: on a CPU of its own the spin only burns
// time nobody wanted and saves the server a wake-up per reply (nginx pinned,
// 1.17x wrk's requests/s and less nginx CPU per request). On a CPU the
// server also needs, the spin takes the server's time (echo-epoll and 2
// workers on 2 CPUs: spin at 0.6-0.82x of sleep).
//
// How it is decided, measured on this 2-CPU VM (clients/loadgen/README.md):
//   rule   before the run (Options::spin_ruled_out): the server on this
//          machine and as many workers as CPUs: no spin at all. The
//          engine builds the policy with allow_spin = false.
//   watch  spinning, each worker's time spent runnable but waiting for a
//          CPU (run_delay, /proc/thread-self/schedstat) over the last 100 ms
//          (5 epochs of 20 ms): a worker with a CPU of its own waits under
//          1 % of the time, spinning or not; one sharing a CPU with the
//          server waits 14-47 %. Over 10 % (contention_limit) means the spin
//          holds a CPU another thread wants: sleep.
//          And the share of spins that found events within the budget: under
//          a quarter (a slow server, an open loop at a low rate, idle
//          connections) means the spin only burns the client's CPU: sleep.
//   hold   sleeping because of contention, the watch goes on (a thread that
//          waits for a CPU while sleeping shows the same run_delay): back to
//          the spin once a whole window shows no contention and 480 ms have
//          passed. Sleeping because the spin found nothing, there is nothing
//          to watch: try the spin again after 480 ms, doubled each time the
//          try fails within its first window (up to 7.7 s).
// Why not compare the two by their speed during the run (an earlier version
// did: alternating 20 ms epochs of spin and sleep, spin, sleep, sleep, spin):
// the difference builds up over 100-200 ms, longer than an epoch, as the
// scheduler rebalances the busy threads (sleep to spin on 2 shared CPUs:
// 164-183k requests/s for the first 100 ms, 100-120k after 300 ms), so
// short epochs saw a tie where the spin ran at 0.6x, and on a CPU of its own
// saw a tie where the spin ran 10-15 % faster; and the time spent in the
// other arm cost 10-15 % on nginx's static file where either arm alone ran
// as fast (bench-loadgen.sh, 2026-12-07).
//
// The class is pure logic: the engine feeds it one Sample per epoch (the sum
// over the workers) and reads budget_ns(); the unit tests feed it synthetic
// samples.
#pragma once

#include <array>
#include <cstdint>

namespace loadgen {

// What the workers did during one epoch (summed over the workers).
struct WaitSample {
    uint64_t elapsed_ns = 0;    // the epoch's length
    uint64_t spins = 0;         // waits that spun
    uint64_t spin_hits = 0;     // ... and found events within the budget
    uint64_t run_delay_ns = 0;  // time the workers were runnable, waiting for a CPU
    unsigned workers = 1;       // whose run_delay is summed (0: not known)
};

struct WaitConfig {
    bool allow_spin = true;  // false: sleep the whole run (ruled out before it)
    uint64_t spin_ns = 50'000;
    uint64_t epoch_ns = 20'000'000;
    unsigned window = 5;             // epochs the watch looks back over (at most kMaxWindow)
    double contention_limit = 0.10;  // a worker waiting for a CPU this share of the time
    double min_hit_rate = 0.25;      // spins that must find events for the spin to pay
    uint64_t min_spins = 50;         // per window, for the hit rate to count
    uint64_t hold_min_ns = 480'000'000;
    uint64_t hold_max_ns = 7'680'000'000;
};

class AdaptiveWait {
  public:
    enum class Why : uint8_t { none, ruled_out, contention, futile };
    static constexpr unsigned kMaxWindow = 16;

    explicit AdaptiveWait(WaitConfig c = {});

    // The spin budget for the waits of the coming epoch (0: sleep at once).
    [[nodiscard]] uint64_t budget_ns() const noexcept { return spin_ ? cfg_.spin_ns : 0; }
    // How long the coming epoch lasts.
    [[nodiscard]] uint64_t epoch_ns() const noexcept { return cfg_.epoch_ns; }
    // One epoch is over: watch it, and change the choice if it says so.
    void on_epoch(const WaitSample& s);

    [[nodiscard]] bool spinning() const noexcept { return spin_; }
    [[nodiscard]] Why why_sleeping() const noexcept { return why_; }
    [[nodiscard]] uint64_t hold_ns() const noexcept { return hold_ns_; }
    // Counts for the report.
    [[nodiscard]] unsigned tries() const noexcept { return tries_; }        // spin tried again
    [[nodiscard]] unsigned switches() const noexcept { return switches_; }  // choice changed
    [[nodiscard]] unsigned contended() const noexcept { return contended_; }
    // Time spent with a spin budget, and in all.
    [[nodiscard]] uint64_t spin_time_ns() const noexcept { return spin_time_ns_; }
    [[nodiscard]] uint64_t total_time_ns() const noexcept { return total_time_ns_; }
    // Time the watch had no run_delay figure (workers 0: no schedstat), so
    // could not see contention; the report says so when it is most of the run.
    [[nodiscard]] uint64_t blind_time_ns() const noexcept { return blind_time_ns_; }

  private:
    struct Sums {
        uint64_t spins = 0, hits = 0, run_delay_ns = 0, worker_ns = 0;
    };
    [[nodiscard]] Sums window_sums() const noexcept;
    void go(bool spin, Why why);

    WaitConfig cfg_;
    bool spin_ = true;
    Why why_ = Why::none;
    std::array<WaitSample, kMaxWindow> ring_{};
    unsigned seen_ = 0;     // epochs in the ring since the last change (<= window)
    unsigned next_ = 0;     // where the next epoch goes
    uint64_t held_ns_ = 0;  // time since the last change
    uint64_t hold_ns_ = 0;  // sleeping: the least time before the spin runs again
    unsigned tries_ = 0, switches_ = 0, contended_ = 0;
    uint64_t spin_time_ns_ = 0, total_time_ns_ = 0, blind_time_ns_ = 0;
};

}  // namespace loadgen
