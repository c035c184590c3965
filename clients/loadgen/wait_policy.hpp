// How long loadgen's workers spin before they sleep, when --busy-poll is not
// given: an adaptive choice between the two fixed policies, spin (50 µs) and
// sleep (0), made by measuring both on the run itself.
//
// Why not a rule: whether spinning pays depends on who else wants the CPU the
// client spins on. With a CPU of its own (taskset) a spinning client only
// burns what nobody wanted, and every reply it catches while still looking
// saves the server a wake-up: spin wins (nginx: 1.17x wrk's requests/s, and
// less nginx CPU per request). Sharing two CPUs with a server that needs one
// of them, the spin takes time the server needed to answer (echo-epoll
// unpinned: spin 0.82x of sleep). And unpinned nginx still prefers the spin.
// Neither the affinity mask nor the server's CPU decides it, so the policy
// measures the one figure that does: how fast requests complete.
//
// The cycle:
//   probe  2 rounds of 4 epochs (20 ms each), the arms in the order spin,
//          sleep, sleep, spin (ABBA: a linear drift of the machine's speed
//          hits both arms alike). Per arm: requests completed and the sum
//          of their latencies. The score of an arm is requests / latency
//          sum = 1 / mean latency: in a closed loop (every connection
//          always busy) it is proportional to requests/s; in an open loop
//          (--rate fixes requests/s) it is what the wait can still change.
//   decide the spin unless sleep scores more than 1 % higher (a tie goes to
//          the spin: it costs the server less, the server's CPU is what a
//          benchmark reads). A probe with too few requests to compare
//          (connections still coming up, an idle or stalled server) decides
//          from how often a spin found events before its budget ran out:
//          spin while at least a quarter of the spins paid.
//   hold   the winner for 480 ms, doubled each time the probe confirms it
//          (up to 7.7 s), back to 480 ms when it changes; four times as long
//          when the scores differ by more than 10 %: what a probe costs is
//          its losing arm's time times the gap, so the larger the gap the
//          rarer the probes should be (and a gap that large is no accident
//          of noise). The losing arm runs 80 ms per probe: a few % of a run
//          of a few seconds.
//   watch  while holding the spin, an epoch whose involuntary context
//          switches per second exceed twice the probe's (plus 200/s) means
//          something began to compete for the CPU (the scheduler now takes
//          the CPU away from the spinning worker): probe again at once.
//
// The class is pure logic: the engine feeds it one Sample per epoch (the sum
// over the workers) and reads budget_ns(); the unit tests feed it synthetic
// samples.
#pragma once

#include <cstdint>

namespace loadgen {

// What the workers did during one epoch (summed over the workers).
struct WaitSample {
    uint64_t elapsed_ns = 0;  // the epoch's length
    uint64_t requests = 0;    // completed in it
    uint64_t latency_ns = 0;  // the sum of their latencies
    uint64_t spins = 0;       // waits that spun
    uint64_t spin_hits = 0;   // ... and found events within the budget
    uint64_t ivcsw = 0;       // involuntary context switches of the process
};

struct WaitConfig {
    uint64_t spin_ns = 50'000;
    uint64_t epoch_ns = 20'000'000;
    unsigned probe_rounds = 2;  // of 4 epochs each: spin, sleep, sleep, spin
    uint64_t hold_min_ns = 480'000'000;
    uint64_t hold_max_ns = 7'680'000'000;
    double margin = 0.01;            // sleep must score this much higher to win
    double confident_gap = 0.10;     // scores this far apart: hold 4x longer
    uint64_t min_requests = 200;     // per arm, for the scores to decide
    double min_hit_rate = 0.25;      // inconclusive probe: spin if this share of spins paid
    double contention_factor = 2.0;  // watch: ivcsw/s above factor x probe's + floor
    double contention_floor_per_s = 200;
};

class AdaptiveWait {
  public:
    enum class Phase : uint8_t { probe, hold };

    explicit AdaptiveWait(WaitConfig c = {});

    // The spin budget for the waits of the coming epoch (0: sleep at once).
    [[nodiscard]] uint64_t budget_ns() const noexcept;
    // How long the coming epoch lasts.
    [[nodiscard]] uint64_t epoch_ns() const noexcept { return cfg_.epoch_ns; }
    // One epoch is over: advance the probe, decide, or watch the hold.
    void on_epoch(const WaitSample& s);

    [[nodiscard]] Phase phase() const noexcept { return phase_; }
    [[nodiscard]] bool holding_spin() const noexcept { return choice_spin_; }
    [[nodiscard]] uint64_t hold_ns() const noexcept { return hold_ns_; }
    // Counts for the report.
    [[nodiscard]] unsigned probes() const noexcept { return probes_; }        // probes finished
    [[nodiscard]] unsigned switches() const noexcept { return switches_; }    // choice changed
    [[nodiscard]] unsigned contended() const noexcept { return contended_; }  // early re-probes
    // Time spent with a spin budget (probe spin epochs + holds of the spin).
    [[nodiscard]] uint64_t spin_time_ns() const noexcept { return spin_time_ns_; }
    [[nodiscard]] uint64_t total_time_ns() const noexcept { return total_time_ns_; }

  private:
    struct Arm {
        uint64_t elapsed_ns = 0, requests = 0, latency_ns = 0, spins = 0, hits = 0, ivcsw = 0;
        void add(const WaitSample& s);
    };
    [[nodiscard]] bool probe_arm_spins() const noexcept;
    void start_probe();
    void decide();

    WaitConfig cfg_;
    Phase phase_ = Phase::probe;
    unsigned step_ = 0;  // probe: epochs done
    Arm spin_, sleep_;   // probe: the two arms' sums
    bool choice_spin_ = true;
    bool decided_ = false;
    uint64_t hold_ns_ = 0;    // the current hold's length
    uint64_t held_ns_ = 0;    // hold: time spent in it so far
    double ivcsw_per_s_ = 0;  // the last probe's spin arm: involuntary switches per second
    unsigned probes_ = 0, switches_ = 0, contended_ = 0;
    uint64_t spin_time_ns_ = 0, total_time_ns_ = 0;
};

}  // namespace loadgen
