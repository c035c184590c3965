#include <poll.h>
#include <pthread.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>

#include "common/signals.hpp"

namespace {
// Restores the thread's signal mask when a test ends: StopSignals blocks
// SIGINT/SIGTERM in the thread that creates it, on purpose.
struct MaskGuard {
    sigset_t saved;
    MaskGuard() { pthread_sigmask(SIG_SETMASK, nullptr, &saved); }
    ~MaskGuard() {
        // Drain anything still pending before unblocking, or it would kill us.
        sigset_t pending;
        sigpending(&pending);
        timespec zero{0, 0};
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        while (sigtimedwait(&stop, nullptr, &zero) > 0) {
        }
        pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    }
};
}  // namespace

TEST_CASE("StopSignals turns SIGTERM into a readable signalfd", "[signals]") {
    MaskGuard guard;
    iolab::StopSignals stop;
    CHECK_FALSE(stop.check());
    pollfd p{stop.fd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 0) == 0);
    REQUIRE(::raise(SIGTERM) == 0);  // blocked: stays pending, the process lives
    CHECK(::poll(&p, 1, 1000) == 1);
    CHECK(stop.check());
    CHECK(stop.requested());
    CHECK(stop.signal_number() == SIGTERM);
}

TEST_CASE("StopSignals::watch calls back on a signal, and not when it just ends", "[signals]") {
    MaskGuard guard;
    std::atomic<int> calls{0};
    {
        iolab::StopSignals quiet;
        auto w = quiet.watch([&] { ++calls; });
    }  // the Watch wakes its thread and joins it without a signal
    CHECK(calls == 0);
    {
        iolab::StopSignals stop;
        auto w = stop.watch([&] { ++calls; });
        stop.request();
    }
    CHECK(calls == 1);
}
