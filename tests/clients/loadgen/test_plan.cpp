// Unit tests of loadgen's planner (clients/loadgen/plan.hpp): how the options
// become one plan per worker.
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <numeric>
#include <random>

#include "clients/loadgen/options.hpp"
#include "clients/loadgen/plan.hpp"

using loadgen::Mode;
using loadgen::Options;
using loadgen::plan_workers;
using loadgen::WorkerPlan;

namespace {

// Options as resolve() would leave them, without resolving anything.
Options opts(Mode mode, uint64_t connections, unsigned threads, std::size_t targets = 1,
             std::size_t sources = 0) {
    Options o;
    o.mode = mode;
    o.connections = connections;
    o.threads = threads;
    for (std::size_t i = 0; i < targets; ++i)
        o.targets.push_back(
            loadgen::Target{iolab::SockAddr::from_numeric("127.0.0.1", 7000), "t", {}});
    for (std::size_t i = 0; i < sources; ++i)
        o.sources.push_back(iolab::SockAddr::from_numeric("127.0.0.2", 0));
    return o;
}

uint64_t total_quota(const std::vector<WorkerPlan>& plans) {
    return std::accumulate(plans.begin(), plans.end(), uint64_t{0},
                           [](uint64_t n, const WorkerPlan& w) { return n + w.quota; });
}

}  // namespace

TEST_CASE("plan: connections dealt round-robin over workers, targets and sources", "[unit]") {
    Options o = opts(Mode::echo, 10, 3, 2, 3);
    auto plans = plan_workers(o);
    REQUIRE(plans.size() == 3);
    CHECK(plans[0].conns.size() == 4);
    CHECK(plans[1].conns.size() == 3);
    CHECK(plans[2].conns.size() == 3);
    std::vector<int> seen(10, 0);
    for (const auto& w : plans) {
        uint32_t slot = 0;
        for (const auto& c : w.conns) {
            ++seen[c.global];
            CHECK(c.global % 3 == w.index);
            CHECK(c.target == c.global % 2);
            CHECK(c.source == c.global % 3);
            CHECK(c.active);
            CHECK(c.slot == slot++);
            CHECK(c.start_ns == 0);
        }
        CHECK(w.active == w.conns.size());
        CHECK(w.quota == 0);
        CHECK_FALSE(w.follower);
        CHECK(w.tick_ns == 0);
    }
    CHECK(seen == std::vector<int>(10, 1));  // every connection exactly once
}

TEST_CASE("plan: -n split exactly, in proportion to active connections", "[unit]") {
    Options o = opts(Mode::echo, 10, 3);
    o.requests = 1000;
    auto plans = plan_workers(o);
    CHECK(total_quota(plans) == 1000);
    // 4 : 3 : 3 connections
    CHECK(plans[0].quota == 400);
    CHECK(plans[1].quota == 300);
    CHECK(plans[2].quota == 300);

    // Fewer requests than workers: the workers without a share follow.
    o.requests = 2;
    plans = plan_workers(o);
    CHECK(total_quota(plans) == 2);
    int followers = 0;
    for (const auto& w : plans)
        followers += w.follower ? 1 : 0;
    CHECK(followers == 1);

    // Any combination adds up to -n exactly.
    std::mt19937 rng(7);
    for (int i = 0; i < 500; ++i) {
        Options r = opts(i % 2 ? Mode::idle : Mode::echo, 1 + rng() % 5000, 1 + rng() % 16);
        r.active = r.mode == Mode::idle ? 1 + rng() % r.connections : 0;
        r.requests = 1 + rng() % 1'000'000;
        auto p = plan_workers(r);
        INFO("c=" << r.connections << " threads=" << r.threads << " n=" << r.requests);
        REQUIRE(total_quota(p) == r.requests);
        for (const auto& w : p) {
            CHECK(w.follower == (w.quota == 0));
            if (w.active == 0) CHECK(w.quota == 0);
        }
    }
}

TEST_CASE("plan: idle mode, only the first --active connections work", "[unit]") {
    Options o = opts(Mode::idle, 10, 2);
    o.active = 3;  // globals 0, 1, 2: worker 0 gets 0 and 2, worker 1 gets 1
    o.requests = 90;
    auto plans = plan_workers(o);
    CHECK(plans[0].active == 2);
    CHECK(plans[1].active == 1);
    CHECK(plans[0].quota == 60);
    CHECK(plans[1].quota == 30);
    for (const auto& w : plans)
        for (const auto& c : w.conns)
            CHECK(c.active == (c.global < 3));

    o.active = 1;  // worker 1 has only idle connections: a follower
    plans = plan_workers(o);
    CHECK(plans[0].quota == 90);
    CHECK(plans[1].quota == 0);
    CHECK(plans[1].follower);
}

TEST_CASE("plan: --rate tick, each connection once per period", "[unit]") {
    Options o = opts(Mode::echo, 10, 3);
    o.rate = 1000;  // 10 connections: each sends every 10 ms
    auto plans = plan_workers(o);
    CHECK(plans[0].tick_ns == Approx(10e6 / 4));
    CHECK(plans[1].tick_ns == Approx(10e6 / 3));
    // The workers' rates add up to --rate.
    double sum = 0;
    for (const auto& w : plans)
        sum += 1e9 / w.tick_ns;
    CHECK(sum == Approx(1000));

    Options idle = opts(Mode::idle, 100, 2);
    idle.active = 1;
    idle.rate = 50;
    plans = plan_workers(idle);
    CHECK(plans[0].tick_ns == Approx(1e9 / 50));
    CHECK(plans[1].tick_ns == 0);  // nothing to send
}

TEST_CASE("plan: --ramp spreads the first connects", "[unit]") {
    Options o = opts(Mode::echo, 4, 2);
    o.ramp_s = 2;
    auto plans = plan_workers(o);
    // global 0..3 at 0, 0.5, 1, 1.5 s
    CHECK(plans[0].conns[0].start_ns == 0);
    CHECK(plans[1].conns[0].start_ns == 500'000'000);
    CHECK(plans[0].conns[1].start_ns == 1'000'000'000);
    CHECK(plans[1].conns[1].start_ns == 1'500'000'000);
}

TEST_CASE(
    "busy-poll auto: the spin is ruled out when the workers could take every CPU "
    "from a server on this machine",
    "[unit]") {
    const auto cpus = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
    REQUIRE(cpus >= 1);
    auto resolved = [](std::string target, unsigned threads, unsigned processes,
                       std::string busy_poll = "auto") {
        Options o;
        o.target = std::move(target);
        o.connections = 64;
        o.threads = threads;
        o.processes = processes;
        o.busy_poll = std::move(busy_poll);
        loadgen::resolve(o);
        return o;
    };
    // As many workers as CPUs, the server on loopback: no spin, and why.
    Options o = resolved("127.0.0.1:7000", cpus, 1);
    CHECK(o.busy_poll_auto);
    CHECK(o.spin_ruled_out == std::to_string(cpus) + (cpus == 1 ? " worker on " : " workers on ") +
                                  std::to_string(cpus) + (cpus == 1 ? " CPU" : " CPUs") +
                                  ", the server on this machine");
    CHECK_FALSE(resolved("[::1]:7000", cpus, 1).spin_ruled_out.empty());
    // Workers of several processes count together.
    if (cpus >= 2) {
        CHECK_FALSE(resolved("127.0.0.1:7000", 1, cpus).spin_ruled_out.empty());
        // One CPU left over: the watch during the run decides.
        CHECK(resolved("127.0.0.1:7000", cpus - 1, 1).spin_ruled_out.empty());
    }
    // A server elsewhere: no CPU of its to take (198.51.100.0/24 is never local).
    CHECK(resolved("198.51.100.7:7000", cpus, 1).spin_ruled_out.empty());
    // A fixed --busy-poll is what was asked: never ruled out.
    Options f = resolved("127.0.0.1:7000", cpus, 1, "50");
    CHECK_FALSE(f.busy_poll_auto);
    CHECK(f.spin_ruled_out.empty());
}

TEST_CASE("is_local_address: loopback and this machine's own addresses", "[unit]") {
    using iolab::SockAddr;
    CHECK(loadgen::is_local_address(SockAddr::from_numeric("127.0.0.1", 80)));
    CHECK(loadgen::is_local_address(SockAddr::from_numeric("127.3.4.5", 80)));
    CHECK(loadgen::is_local_address(SockAddr::from_numeric("::1", 80)));
    CHECK_FALSE(loadgen::is_local_address(SockAddr::from_numeric("198.51.100.7", 80)));
    CHECK_FALSE(loadgen::is_local_address(SockAddr::from_numeric("2001:db8::7", 80)));
    // Each address of this machine's interfaces counts as local.
    ifaddrs* list = nullptr;
    REQUIRE(::getifaddrs(&list) == 0);
    int seen = 0;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        SockAddr a;
        std::memcpy(&a.storage, i->ifa_addr, sizeof(sockaddr_in));
        a.len = sizeof(sockaddr_in);
        INFO(i->ifa_name << " " << a.host());
        CHECK(loadgen::is_local_address(a));
        ++seen;
    }
    ::freeifaddrs(list);
    CHECK(seen >= 1);  // lo at least
}
