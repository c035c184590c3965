// Unit tests of loadgen's adaptive wait (clients/loadgen/wait_policy.hpp),
// fed with synthetic epochs: a model of "the workers completed this many
// requests, this fast, under this arm" stands in for the machine.
#include <catch2/catch.hpp>
#include <functional>
#include <vector>

#include "clients/loadgen/wait_policy.hpp"

using loadgen::AdaptiveWait;
using loadgen::WaitConfig;
using loadgen::WaitSample;

namespace {

constexpr uint64_t kEpoch = 20'000'000;
constexpr uint64_t kSpin = 50'000;

// A closed loop of `conns` connections completing `rps` requests/s: each
// request takes conns / rps seconds, so an epoch's latency sum is conns x
// epoch (every connection always busy).
WaitSample closed_loop(double rps, uint64_t conns = 50, double hit_rate = 0.9,
                       double ivcsw_per_s = 0) {
    WaitSample s;
    s.elapsed_ns = kEpoch;
    s.requests = static_cast<uint64_t>(rps * 0.02);
    s.latency_ns = conns * kEpoch;
    s.spins = 1000;
    s.spin_hits = static_cast<uint64_t>(1000 * hit_rate);
    s.ivcsw = static_cast<uint64_t>(ivcsw_per_s * 0.02);
    return s;
}

// Runs `epochs` epochs; `world(spinning, epoch index)` says what the epoch
// looks like under the arm the policy chose. Returns the arms, in order.
std::vector<bool> drive(AdaptiveWait& w, int epochs,
                        const std::function<WaitSample(bool, int)>& world) {
    std::vector<bool> arms;
    for (int i = 0; i < epochs; ++i) {
        const bool spin = w.budget_ns() > 0;
        if (spin) CHECK(w.budget_ns() == kSpin);
        arms.push_back(spin);
        w.on_epoch(world(spin, i));
    }
    return arms;
}

}  // namespace

TEST_CASE("adaptive wait: a probe runs the arms spin, sleep, sleep, spin, twice", "[unit]") {
    AdaptiveWait w;
    CHECK(w.phase() == AdaptiveWait::Phase::probe);
    auto arms = drive(w, 8, [](bool, int) { return closed_loop(80'000); });
    CHECK(arms == std::vector<bool>{true, false, false, true, true, false, false, true});
    CHECK(w.phase() == AdaptiveWait::Phase::hold);
    CHECK(w.probes() == 1);
    CHECK(w.epoch_ns() == kEpoch);
}

TEST_CASE("adaptive wait: the spin is kept where it is faster (a CPU of its own)", "[unit]") {
    AdaptiveWait w;
    // Pinned nginx: spinning saves the wake-ups, 17 % more requests.
    auto arms =
        drive(w, 8 + 24, [](bool spin, int) { return closed_loop(spin ? 117'000 : 100'000); });
    CHECK(w.holding_spin());
    CHECK(w.budget_ns() == kSpin);
    // After the probe: 24 epochs (480 ms) of spin at least (a 17 % gap holds 4x).
    for (std::size_t i = 8; i < arms.size(); ++i)
        CHECK(arms[i]);
    CHECK(w.switches() == 0);
}

TEST_CASE("adaptive wait: sleep is chosen where the spin steals the server's CPU", "[unit]") {
    AdaptiveWait w;
    // echo-epoll unpinned on two CPUs: spinning runs at 0.82x.
    auto arms =
        drive(w, 8 + 95, [](bool spin, int) { return closed_loop(spin ? 73'500 : 89'500); });
    CHECK_FALSE(w.holding_spin());
    CHECK(w.budget_ns() == 0);
    for (std::size_t i = 8; i < arms.size(); ++i)
        CHECK_FALSE(arms[i]);
    // An 18 % gap holds 4 x 480 ms: the hold's 96th epoch ends it, and the
    // next probe starts with the spin.
    drive(w, 1, [](bool, int) { return closed_loop(89'500); });
    CHECK(w.phase() == AdaptiveWait::Phase::probe);
    CHECK(w.budget_ns() == kSpin);
}

TEST_CASE("adaptive wait: a tie, or sleep ahead by less than the margin, keeps the spin",
          "[unit]") {
    for (double sleep_rps : {100'000.0, 100'500.0}) {
        AdaptiveWait w;
        drive(w, 8, [&](bool spin, int) { return closed_loop(spin ? 100'000 : sleep_rps); });
        INFO("sleep " << sleep_rps << " req/s against spin 100000");
        CHECK(w.holding_spin());
    }
    AdaptiveWait w;
    drive(w, 8, [](bool spin, int) { return closed_loop(spin ? 100'000 : 102'000); });
    CHECK_FALSE(w.holding_spin());  // 2 % is beyond the 1 % margin
}

TEST_CASE("adaptive wait: the ABBA order cancels a machine that slows down steadily", "[unit]") {
    // Both arms equally fast, the machine losing 2 % per epoch: in the order
    // spin, sleep, ... the first arm alone would look faster. ABBA gives both
    // the same mean position, so it stays a tie (spin kept)...
    AdaptiveWait tie;
    drive(tie, 8, [](bool, int i) { return closed_loop(100'000 * (1 - 0.02 * i)); });
    CHECK(tie.holding_spin());
    // ...and a real 10 % advantage of sleep still shows through the drift.
    AdaptiveWait w;
    drive(w, 8, [](bool spin, int i) {
        return closed_loop((spin ? 100'000 : 110'000) * (1 - 0.02 * i));
    });
    CHECK_FALSE(w.holding_spin());
}

TEST_CASE("adaptive wait: in an open loop the score is the mean latency", "[unit]") {
    // --rate fixes the requests per epoch; the arms differ only in how long
    // each takes: 40 us spinning, 55 us sleeping (the wake-up).
    AdaptiveWait w;
    drive(w, 8, [](bool spin, int) {
        WaitSample s;
        s.elapsed_ns = kEpoch;
        s.requests = 400;
        s.latency_ns = 400 * (spin ? 40'000 : 55'000);
        s.spins = 400;
        s.spin_hits = 380;
        return s;
    });
    CHECK(w.holding_spin());
}

TEST_CASE("adaptive wait: too few requests to compare: spin only while spins find events",
          "[unit]") {
    auto idle = [](double hit_rate) {
        return [hit_rate](bool, int) {
            WaitSample s;
            s.elapsed_ns = kEpoch;
            s.requests = 3;  // connections still coming up, or an idle run
            s.latency_ns = 3 * 1'000'000;
            s.spins = 40;
            s.spin_hits = static_cast<uint64_t>(40 * hit_rate);
            return s;
        };
    };
    AdaptiveWait paid;
    drive(paid, 8, idle(0.5));
    CHECK(paid.holding_spin());
    AdaptiveWait wasted;
    drive(wasted, 8, idle(0.05));
    CHECK_FALSE(wasted.holding_spin());
    // No spin at all in the probe (every wait had a timer due): sleep.
    AdaptiveWait none;
    drive(none, 8, [](bool, int) { return WaitSample{kEpoch, 0, 0, 0, 0, 0}; });
    CHECK_FALSE(none.holding_spin());
}

TEST_CASE("adaptive wait: the hold doubles while the probes agree, resets when they do not",
          "[unit]") {
    WaitConfig c;
    AdaptiveWait w(c);
    bool spin_faster = true;
    auto world = [&](bool spin, int) {  // 5 %: not a confident gap
        return closed_loop(spin == spin_faster ? 105'000 : 100'000);
    };
    drive(w, 8, world);
    CHECK(w.hold_ns() == c.hold_min_ns);
    uint64_t expect = c.hold_min_ns;
    for (int probe = 2; probe <= 7; ++probe) {
        // The hold, then the next probe.
        const int epochs = static_cast<int>(w.hold_ns() / kEpoch) + 8;
        drive(w, epochs, world);
        expect = std::min(expect * 2, c.hold_max_ns);
        INFO("probe " << probe);
        CHECK(w.probes() == static_cast<unsigned>(probe));
        CHECK(w.hold_ns() == expect);
        CHECK(w.phase() == AdaptiveWait::Phase::hold);
    }
    CHECK(w.hold_ns() == c.hold_max_ns);
    // The machine changes: sleep becomes faster; the next probe switches
    // and the hold starts short again.
    spin_faster = false;
    drive(w, static_cast<int>(w.hold_ns() / kEpoch) + 8, world);
    CHECK_FALSE(w.holding_spin());
    CHECK(w.switches() == 1);
    CHECK(w.hold_ns() == c.hold_min_ns);
}

TEST_CASE("adaptive wait: a gap over 10 % holds four times as long", "[unit]") {
    WaitConfig c;
    // One connection, pinned: every sleep is a wake-up on the round trip,
    // spinning is 40 % faster. Probing often would cost the most here.
    AdaptiveWait w(c);
    drive(w, 8, [](bool spin, int) { return closed_loop(spin ? 140'000 : 100'000); });
    CHECK(w.holding_spin());
    CHECK(w.hold_ns() == 4 * c.hold_min_ns);
    // Confirmed: doubled, then four times that, capped.
    drive(w, static_cast<int>(w.hold_ns() / kEpoch) + 8,
          [](bool spin, int) { return closed_loop(spin ? 140'000 : 100'000); });
    CHECK(w.probes() == 2);
    CHECK(w.hold_ns() == std::min(4 * 2 * 4 * c.hold_min_ns, c.hold_max_ns));
    // The same holds for sleep far ahead (the unpinned echo: 18 %).
    AdaptiveWait s(c);
    drive(s, 8, [](bool spin, int) { return closed_loop(spin ? 73'500 : 89'500); });
    CHECK_FALSE(s.holding_spin());
    CHECK(s.hold_ns() == 4 * c.hold_min_ns);
    // A 5 % gap: the plain hold.
    AdaptiveWait n(c);
    drive(n, 8, [](bool spin, int) { return closed_loop(spin ? 105'000 : 100'000); });
    CHECK(n.hold_ns() == c.hold_min_ns);
}

TEST_CASE("adaptive wait: preemption while holding the spin starts a probe at once", "[unit]") {
    AdaptiveWait w;
    // Probe: a CPU of its own, hardly any involuntary switches (50/s).
    drive(w, 8, [](bool spin, int) { return closed_loop(spin ? 110'000 : 100'000, 50, 0.9, 50); });
    REQUIRE(w.holding_spin());
    REQUIRE(w.phase() == AdaptiveWait::Phase::hold);
    // Preemption at 250/s stays under 2 x 50 + 200 = 300/s: keep holding.
    drive(w, 5, [](bool, int) { return closed_loop(110'000, 50, 0.9, 250); });
    CHECK(w.phase() == AdaptiveWait::Phase::hold);
    CHECK(w.contended() == 0);
    // Then another process lands on the CPU: 2,000 preemptions/s.
    drive(w, 1, [](bool, int) { return closed_loop(110'000, 50, 0.9, 2000); });
    CHECK(w.contended() == 1);
    CHECK(w.phase() == AdaptiveWait::Phase::probe);
    CHECK(w.budget_ns() == kSpin);  // a probe starts with the spin arm
    // While holding sleep nothing is watched: sleeping cannot steal the CPU.
    AdaptiveWait s;
    drive(s, 8, [](bool spin, int) { return closed_loop(spin ? 90'000 : 100'000); });
    REQUIRE_FALSE(s.holding_spin());
    drive(s, 5, [](bool, int) { return closed_loop(100'000, 50, 0.9, 5000); });
    CHECK(s.phase() == AdaptiveWait::Phase::hold);
    CHECK(s.contended() == 0);
}

TEST_CASE("adaptive wait: the time with a spin budget is counted", "[unit]") {
    AdaptiveWait w;
    drive(w, 8 + 24, [](bool spin, int) { return closed_loop(spin ? 110'000 : 100'000); });
    CHECK(w.total_time_ns() == 32 * kEpoch);
    CHECK(w.spin_time_ns() == (4 + 24) * kEpoch);
}
