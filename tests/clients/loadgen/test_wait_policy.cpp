// Unit tests of loadgen's adaptive wait (clients/loadgen/wait_policy.hpp),
// fed with synthetic epochs: a model of "the workers spun this often, found
// events this often, and waited this long for a CPU" stands in for the
// machine.
#include <algorithm>
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

// One epoch of `workers` workers, each waiting for a CPU `waiting` of the
// time, whose spins found events `hit_rate` of the time.
WaitSample epoch(double waiting = 0.005, double hit_rate = 0.9, unsigned workers = 2) {
    WaitSample s;
    s.elapsed_ns = kEpoch;
    s.spins = 1000;
    s.spin_hits = static_cast<uint64_t>(1000 * hit_rate);
    s.workers = workers;
    s.run_delay_ns = static_cast<uint64_t>(waiting * kEpoch * workers);
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

int count(const std::vector<bool>& arms, bool v) {
    return static_cast<int>(std::count(arms.begin(), arms.end(), v));
}

}  // namespace

TEST_CASE("adaptive wait: a CPU of its own: the spin from the first wait to the last", "[unit]") {
    AdaptiveWait w;
    CHECK(w.epoch_ns() == kEpoch);
    // Measured pinned, and unpinned with one worker beside a one-thread
    // server: each worker waits for a CPU under 1 % of the time.
    auto arms = drive(w, 500, [](bool, int) { return epoch(0.007); });
    CHECK(count(arms, false) == 0);
    CHECK(w.switches() == 0);
    CHECK(w.spin_time_ns() == 500 * kEpoch);
    CHECK(w.total_time_ns() == 500 * kEpoch);
}

TEST_CASE("adaptive wait: sharing a CPU with the server: sleep after one window", "[unit]") {
    AdaptiveWait w;
    // Measured with the client on the server's CPU: 43-47 % of the time
    // waiting, spinning or sleeping alike. The first window (5 epochs) says so.
    auto arms = drive(w, 300, [](bool, int) { return epoch(0.45, 0.9, 1); });
    CHECK(count(arms, true) == 5);
    for (std::size_t i = 5; i < arms.size(); ++i)
        CHECK_FALSE(arms[i]);
    CHECK(w.why_sleeping() == AdaptiveWait::Why::contention);
    CHECK(w.contended() == 1);
    // The contention never left: the spin was never tried again.
    CHECK(w.tries() == 0);
}

TEST_CASE("adaptive wait: contention gone, the spin comes back after the hold", "[unit]") {
    WaitConfig c;
    AdaptiveWait w(c);
    // Another process takes the CPU for a while, then leaves at epoch 40.
    auto arms = drive(w, 120, [](bool, int i) { return epoch(i < 40 ? 0.90 : 0.004); });
    // Sleep from epoch 5; the hold (24 epochs) is over at epoch 29, but
    // contention lasts to epoch 40, and the window (5 epochs) stays over the
    // limit while any of them is in it: the spin is back from epoch 45.
    CHECK(count(std::vector<bool>(arms.begin(), arms.begin() + 5), true) == 5);
    for (int i = 5; i < 45; ++i)
        CHECK_FALSE(arms[static_cast<std::size_t>(i)]);
    for (std::size_t i = 45; i < arms.size(); ++i)
        CHECK(arms[i]);
    CHECK(w.tries() == 1);
    CHECK(w.switches() == 2);
}

TEST_CASE("adaptive wait: 10 % of the time waiting for a CPU is the limit", "[unit]") {
    AdaptiveWait under;
    drive(under, 50, [](bool, int) { return epoch(0.09); });
    CHECK(under.spinning());
    AdaptiveWait over;
    drive(over, 50, [](bool, int) { return epoch(0.11); });
    CHECK_FALSE(over.spinning());
    // No schedstat figure at all (workers 0): no contention can be seen.
    AdaptiveWait blind;
    drive(blind, 50, [](bool, int) { return epoch(0.9, 0.9, 0); });
    CHECK(blind.spinning());
    // ... and the policy counts that time, for the report to say so.
    CHECK(blind.blind_time_ns() == blind.total_time_ns());
    CHECK(blind.total_time_ns() > 0);
    CHECK(over.blind_time_ns() == 0);
}

TEST_CASE("adaptive wait: spins that find nothing: sleep, and try again later, less often",
          "[unit]") {
    WaitConfig c;
    AdaptiveWait w(c);
    // An open loop at a low rate: a spin rarely finds the next reply.
    auto world = [](bool, int) { return epoch(0.0, 0.05); };
    drive(w, 5, world);
    CHECK_FALSE(w.spinning());
    CHECK(w.why_sleeping() == AdaptiveWait::Why::futile);
    CHECK(w.hold_ns() == c.hold_min_ns);
    // After the hold (24 epochs) the spin is tried, fails its first window,
    // and the next hold is twice as long; and so on up to the cap.
    uint64_t expect = c.hold_min_ns;
    for (int k = 1; k <= 6; ++k) {
        auto arms = drive(w, static_cast<int>(w.hold_ns() / kEpoch) + 5, world);
        INFO("try " << k);
        CHECK(count(arms, true) == 5);
        CHECK(w.tries() == static_cast<unsigned>(k));
        expect = std::min(expect * 2, c.hold_max_ns);
        CHECK(w.hold_ns() == expect);
    }
    CHECK(w.hold_ns() == c.hold_max_ns);
    // Too few spins to judge (every wait had a timer due): keep spinning.
    AdaptiveWait few;
    drive(few, 50, [](bool, int) {
        WaitSample s = epoch(0.0, 0.0);
        s.spins = 3;
        s.spin_hits = 0;
        return s;
    });
    CHECK(few.spinning());
}

TEST_CASE("adaptive wait: a try that lasts resets the hold", "[unit]") {
    WaitConfig c;
    AdaptiveWait w(c);
    bool paying = false;
    auto world = [&](bool, int) { return epoch(0.0, paying ? 0.9 : 0.05); };
    drive(w, 5, world);       // futile: sleep, hold 480 ms
    drive(w, 24 + 5, world);  // a failed try: the hold doubles
    REQUIRE(w.hold_ns() == 2 * c.hold_min_ns);
    paying = true;  // the server speeds up
    drive(w, 48 + 100, world);
    CHECK(w.spinning());
    paying = false;  // and slows down again, after a long spin: the shortest hold
    drive(w, 5, world);
    CHECK_FALSE(w.spinning());
    CHECK(w.hold_ns() == c.hold_min_ns);
}

TEST_CASE("adaptive wait: ruled out before the run, the spin never runs", "[unit]") {
    WaitConfig c;
    c.allow_spin = false;
    AdaptiveWait w(c);
    CHECK(w.why_sleeping() == AdaptiveWait::Why::ruled_out);
    auto arms = drive(w, 500, [](bool, int) { return epoch(0.0, 1.0); });
    CHECK(count(arms, true) == 0);
    CHECK(w.switches() == 0);
    CHECK(w.tries() == 0);
    CHECK(w.spin_time_ns() == 0);
    CHECK(w.total_time_ns() == 500 * kEpoch);
}

TEST_CASE("adaptive wait: the time with a spin budget is counted", "[unit]") {
    AdaptiveWait w;
    drive(w, 40, [](bool, int i) { return epoch(i < 20 ? 0.0 : 0.9); });
    // 20 free epochs; the 21st pushes its window over the limit (0.9 / 5).
    CHECK(w.total_time_ns() == 40 * kEpoch);
    CHECK(w.spin_time_ns() == 21 * kEpoch);
}
