// The adaptive wait's state machine (see wait_policy.hpp for the design).
#include "clients/loadgen/wait_policy.hpp"

#include <algorithm>

namespace loadgen {

void AdaptiveWait::Arm::add(const WaitSample& s) {
    elapsed_ns += s.elapsed_ns;
    requests += s.requests;
    latency_ns += s.latency_ns;
    spins += s.spins;
    hits += s.spin_hits;
    ivcsw += s.ivcsw;
}

AdaptiveWait::AdaptiveWait(WaitConfig c) : cfg_(c), hold_ns_(c.hold_min_ns) {
    cfg_.probe_rounds = std::max(1u, cfg_.probe_rounds);
    start_probe();
}

// Within a round of four epochs the arms go spin, sleep, sleep, spin.
bool AdaptiveWait::probe_arm_spins() const noexcept {
    const unsigned k = step_ % 4;
    return k == 0 || k == 3;
}

uint64_t AdaptiveWait::budget_ns() const noexcept {
    const bool spin = phase_ == Phase::probe ? probe_arm_spins() : choice_spin_;
    return spin ? cfg_.spin_ns : 0;
}

void AdaptiveWait::start_probe() {
    phase_ = Phase::probe;
    step_ = 0;
    spin_ = Arm{};
    sleep_ = Arm{};
}

void AdaptiveWait::on_epoch(const WaitSample& s) {
    total_time_ns_ += s.elapsed_ns;
    if (budget_ns() > 0) spin_time_ns_ += s.elapsed_ns;
    if (phase_ == Phase::probe) {
        (probe_arm_spins() ? spin_ : sleep_).add(s);
        if (++step_ == 4 * cfg_.probe_rounds) decide();
        return;
    }
    held_ns_ += s.elapsed_ns;
    if (choice_spin_ && s.elapsed_ns > 0) {
        // Preempted more often than while the probe spun: a competitor for
        // the CPU appeared, and the spin may now be taking its time.
        const double rate = static_cast<double>(s.ivcsw) * 1e9 / static_cast<double>(s.elapsed_ns);
        if (rate > cfg_.contention_factor * ivcsw_per_s_ + cfg_.contention_floor_per_s) {
            ++contended_;
            hold_ns_ = cfg_.hold_min_ns;
            start_probe();
            return;
        }
    }
    if (held_ns_ >= hold_ns_) start_probe();
}

void AdaptiveWait::decide() {
    bool spin;
    bool confident = false;
    if (spin_.requests >= cfg_.min_requests && sleep_.requests >= cfg_.min_requests &&
        spin_.latency_ns > 0 && sleep_.latency_ns > 0) {
        // 1 / mean latency of each arm; compare without dividing twice.
        const double spin_score =
            static_cast<double>(spin_.requests) / static_cast<double>(spin_.latency_ns);
        const double sleep_score =
            static_cast<double>(sleep_.requests) / static_cast<double>(sleep_.latency_ns);
        spin = !(sleep_score > spin_score * (1 + cfg_.margin));
        const double hi = std::max(spin_score, sleep_score), lo = std::min(spin_score, sleep_score);
        confident = hi > lo * (1 + cfg_.confident_gap);
    } else {
        // Too little completed to compare: did spinning find anything?
        spin = spin_.spins > 0 && static_cast<double>(spin_.hits) >=
                                      cfg_.min_hit_rate * static_cast<double>(spin_.spins);
    }
    ++probes_;
    if (decided_ && spin != choice_spin_) ++switches_;
    if (decided_ && spin == choice_spin_)
        hold_ns_ = std::min(hold_ns_ * 2, cfg_.hold_max_ns);
    else
        hold_ns_ = cfg_.hold_min_ns;
    if (confident) hold_ns_ = std::min(hold_ns_ * 4, cfg_.hold_max_ns);
    decided_ = true;
    choice_spin_ = spin;
    ivcsw_per_s_ = spin_.elapsed_ns > 0 ? static_cast<double>(spin_.ivcsw) * 1e9 /
                                              static_cast<double>(spin_.elapsed_ns)
                                        : 0;
    phase_ = Phase::hold;
    held_ns_ = 0;
}

}  // namespace loadgen
