// The planner: the options turned into one plan per worker thread, by a pure
// function (no clock, no socket), so that how the load is split can be tested
// on its own.
//
//   connections  connection g (0 <= g < -c) goes to worker g % threads, to
//                target g % targets and binds source address g % sources;
//   idle mode    the connections g < --active run the workload, the others
//                only hold their socket open;
//   -n           split exactly over the workers in proportion to their
//                active connections; a worker without a share (fewer
//                requests than workers, or only idle connections) is a
//                follower: it holds its connections until the others are done;
//   --rate       open loop: every active connection sends once per
//                active_total / rate seconds, the worker's connections taking
//                turns one tick apart (tick = that period / its active ones);
//   --ramp       connection g starts connecting g * ramp / -c after the start.
#pragma once

#include <cstdint>
#include <vector>

#include "clients/loadgen/options.hpp"

namespace loadgen {

struct ConnPlan {
    uint32_t global = 0;    // index over all connections of the run
    uint16_t target = 0;    // into Options::targets
    uint32_t source = 0;    // into Options::sources (0 when there are none)
    bool active = true;     // runs the workload
    uint32_t slot = 0;      // open loop: position in the worker's cycle (active ones)
    uint64_t start_ns = 0;  // first connect, after the run's start
};

struct WorkerPlan {
    unsigned index = 0;
    std::vector<ConnPlan> conns;
    uint64_t active = 0;    // connections with `active` set
    uint64_t quota = 0;     // -n: requests this worker completes; 0: no limit
    bool follower = false;  // -n given but no share: ends when the others have
    double tick_ns = 0;     // open loop: time between two of this worker's sends
};

// One plan per worker (Options::threads of them, as resolve() left it).
std::vector<WorkerPlan> plan_workers(const Options& o);

}  // namespace loadgen
