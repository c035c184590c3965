// The adaptive wait's state machine (see wait_policy.hpp for the design).
#include "clients/loadgen/wait_policy.hpp"

#include <algorithm>

namespace loadgen {

AdaptiveWait::AdaptiveWait(WaitConfig c) : cfg_(c), hold_ns_(c.hold_min_ns) {
    cfg_.window = std::clamp(cfg_.window, 1u, kMaxWindow);
    if (!cfg_.allow_spin) {
        spin_ = false;
        why_ = Why::ruled_out;
    }
}

AdaptiveWait::Sums AdaptiveWait::window_sums() const noexcept {
    Sums t;
    for (unsigned k = 0; k < seen_; ++k) {
        const WaitSample& s = ring_[(next_ + kMaxWindow - 1 - k) % kMaxWindow];
        t.spins += s.spins;
        t.hits += s.spin_hits;
        t.run_delay_ns += s.run_delay_ns;
        t.worker_ns += s.elapsed_ns * s.workers;
    }
    return t;
}

// Changes the choice; the watch starts over on the new arm.
void AdaptiveWait::go(bool spin, Why why) {
    if (!spin) {
        // A try of the spin that failed at its first look: wait longer before
        // the next (the spin keeps costing where it cannot work); otherwise
        // the shortest hold.
        const bool failed_try = tries_ > 0 && held_ns_ <= cfg_.window * cfg_.epoch_ns;
        hold_ns_ = failed_try ? std::min(hold_ns_ * 2, cfg_.hold_max_ns) : cfg_.hold_min_ns;
        if (why == Why::contention) ++contended_;
    } else {
        ++tries_;
    }
    ++switches_;
    spin_ = spin;
    why_ = why;
    seen_ = 0;
    held_ns_ = 0;
}

void AdaptiveWait::on_epoch(const WaitSample& s) {
    total_time_ns_ += s.elapsed_ns;
    if (spin_) spin_time_ns_ += s.elapsed_ns;
    if (why_ == Why::ruled_out) return;
    if (s.workers == 0) blind_time_ns_ += s.elapsed_ns;
    held_ns_ += s.elapsed_ns;
    ring_[next_] = s;
    next_ = (next_ + 1) % kMaxWindow;
    seen_ = std::min(seen_ + 1, cfg_.window);
    if (seen_ < cfg_.window) return;  // a whole window on this arm first
    const Sums t = window_sums();
    const bool contended =
        t.worker_ns > 0 && static_cast<double>(t.run_delay_ns) >
                               cfg_.contention_limit * static_cast<double>(t.worker_ns);
    if (spin_) {
        if (contended) {
            go(false, Why::contention);
        } else if (t.spins >= cfg_.min_spins &&
                   static_cast<double>(t.hits) < cfg_.min_hit_rate * static_cast<double>(t.spins)) {
            go(false, Why::futile);
        }
        return;
    }
    // Sleeping: contention must be gone (it shows while sleeping too), and
    // the hold over, before the spin runs again.
    if (held_ns_ >= hold_ns_ && !(why_ == Why::contention && contended)) go(true, Why::none);
}

}  // namespace loadgen
