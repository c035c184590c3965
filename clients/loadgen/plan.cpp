#include "clients/loadgen/plan.hpp"

#include <algorithm>

namespace loadgen {

std::vector<WorkerPlan> plan_workers(const Options& o) {
    const unsigned T = std::max(1u, o.threads);
    const std::size_t targets = std::max<std::size_t>(1, o.targets.size());
    const std::size_t sources = std::max<std::size_t>(1, o.sources.size());
    std::vector<WorkerPlan> plans(T);
    for (unsigned t = 0; t < T; ++t) {
        plans[t].index = t;
        plans[t].conns.reserve(o.connections / T + 1);
    }
    for (uint64_t g = 0; g < o.connections; ++g) {
        WorkerPlan& w = plans[g % T];
        ConnPlan c;
        c.global = static_cast<uint32_t>(g);
        c.target = static_cast<uint16_t>(g % targets);
        c.source = static_cast<uint32_t>(g % sources);
        c.active = o.mode != Mode::idle || g < o.active;
        if (c.active) c.slot = static_cast<uint32_t>(w.active++);
        if (o.ramp_s > 0)
            c.start_ns = static_cast<uint64_t>(o.ramp_s * 1e9 * static_cast<double>(g) /
                                               static_cast<double>(o.connections));
        w.conns.push_back(c);
    }
    uint64_t total_active = 0;
    for (const auto& w : plans)
        total_active += w.active;

    uint64_t before = 0;  // active connections of the workers before this one
    for (auto& w : plans) {
        if (o.requests && total_active) {
            // Exact: the shares are differences of one rounded-down sequence,
            // so they add up to -n whatever the rounding.
            const uint64_t lo = o.requests * before / total_active;
            const uint64_t hi = o.requests * (before + w.active) / total_active;
            w.quota = hi - lo;
            w.follower = w.quota == 0;
        }
        before += w.active;
        if (o.rate > 0 && w.active > 0) {
            const double period_ns = static_cast<double>(total_active) / o.rate * 1e9;
            w.tick_ns = period_ns / static_cast<double>(w.active);
        }
    }
    return plans;
}

}  // namespace loadgen
