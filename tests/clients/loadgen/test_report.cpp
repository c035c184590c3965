// Unit tests of loadgen's report: merging N processes' JSON reports gives the
// figures one process would have had with all the samples; --start-at's
// instants.
#include <catch2/catch.hpp>
#include <random>
#include <sstream>

#include "clients/loadgen/options.hpp"
#include "clients/loadgen/report.hpp"

using loadgen::Options;
using loadgen::Results;

namespace {

// One sample's worth of every figure.
void add_sample(Results& r, uint64_t latency_ns, uint64_t intended_lag_ns, int status) {
    r.latency.record(latency_ns + intended_lag_ns);
    r.uncorrected.record(latency_ns);
    r.requests += 1;
    r.bytes_in += 100;
    r.bytes_out += 40;
    r.status[status] += 1;
}

// Through the file format, as `loadgen merge` reads it.
void round_trip(const Options& o, const Results& r, Options& oo, Results& ro) {
    loadgen::from_json(nlohmann::json::parse(loadgen::to_json(o, r).dump()), oo, ro);
}

}  // namespace

TEST_CASE("merge of N reports equals one report of all their samples", "[unit]") {
    std::mt19937_64 rng(99);
    for (int n : {2, 5, 8}) {
        Options o;
        o.mode = loadgen::Mode::echo;
        o.target_names = {"127.0.0.1:9000"};
        o.rate = 8000;
        o.duration_s = 20;
        Results all;
        all.duration_s = 20;
        std::vector<Options> opts(static_cast<std::size_t>(n), o);
        std::vector<Results> parts(static_cast<std::size_t>(n));
        for (auto& p : parts)
            p.duration_s = 20;
        for (auto& po : opts) {
            po.connections = 1000;
            po.threads = 1;
            po.rate = o.rate / n;
        }
        for (int i = 0; i < 100'000; ++i) {
            // A long-tailed latency: most near 50 us, a few up to seconds.
            const uint64_t lat =
                20'000 + rng() % 60'000 + (rng() % 1000 == 0 ? rng() % 2'000'000'000 : 0);
            const uint64_t lag = rng() % 5'000;
            const int status = rng() % 50 == 0 ? 503 : 200;
            add_sample(all, lat, lag, status);
            add_sample(parts[rng() % static_cast<std::size_t>(n)], lat, lag, status);
        }
        for (auto& p : parts) {
            p.connect.record(100'000 + rng() % 1000);
            all.connect.merge(p.connect);
            p.connects = 1000;
            p.errors[{"closed", 0}] = {"connection closed by the server", 3};
            p.rps = static_cast<double>(p.requests) / p.duration_s;
        }
        Options mo;
        Results merged;
        round_trip(opts[0], parts[0], mo, merged);
        for (std::size_t k = 1; k < parts.size(); ++k) {
            Options po;
            Results pr;
            round_trip(opts[k], parts[k], po, pr);
            loadgen::merge_into(mo, merged, po, pr);
        }
        INFO(n << " reports");
        CHECK(merged.runs == n);
        CHECK(mo.connections == 1000u * static_cast<unsigned>(n));
        CHECK(mo.rate == Approx(o.rate));
        CHECK(merged.requests == all.requests);
        CHECK(merged.bytes_in == all.bytes_in);
        CHECK(merged.bytes_out == all.bytes_out);
        CHECK(merged.status == all.status);
        CHECK(merged.connects == 1000u * static_cast<unsigned>(n));
        CHECK(merged.error_total() == 3u * static_cast<unsigned>(n));
        CHECK(merged.rps == Approx(static_cast<double>(all.requests) / 20));
        for (auto [m, a] : {std::pair{&merged.latency, &all.latency},
                            std::pair{&merged.uncorrected, &all.uncorrected},
                            std::pair{&merged.connect, &all.connect}}) {
            CHECK(m->counts() == a->counts());  // bucket by bucket
            CHECK(m->count() == a->count());
            CHECK(m->min() == a->min());
            CHECK(m->max() == a->max());
            CHECK(m->sum() == a->sum());
            for (double p : {50.0, 90.0, 99.0, 99.9, 99.99})
                CHECK(m->percentile(p) == a->percentile(p));
        }
        // What the merged report prints is what the single one prints.
        o.connections = 1000u * static_cast<unsigned>(n);
        o.threads = static_cast<unsigned>(n);
        all.runs = n;
        all.connects = merged.connects;
        all.errors = merged.errors;
        all.rps = merged.rps;
        CHECK(loadgen::to_json(mo, merged).dump() == loadgen::to_json(o, all).dump());
    }
}

TEST_CASE("loadgen --start-at instants: Unix seconds and ISO-8601 UTC", "[unit]") {
    CHECK(loadgen::parse_instant("1764633600") == 1764633600.0);
    CHECK(loadgen::parse_instant("1764633600.25") == Approx(1764633600.25).epsilon(1e-15));
    CHECK(loadgen::parse_instant("2025-12-02T00:00:00Z") == 1764633600.0);
    CHECK(loadgen::parse_instant("2025-12-02T00:00:00.25Z") ==
          Approx(1764633600.25).epsilon(1e-15));
    CHECK(loadgen::parse_instant("2025-12-02T00:00:01+00:00") == 1764633601.0);
    for (const char* bad :
         {"", "soon", "12abc", "-5", "2025-12-02T00:00:00", "2025-12-02T00:00:00+02:00",
          "2025-12-02 00:00:00Z", "2025-12-02T00:00:00.Z", "nan", "inf", "infinity", "1e999"})
        CHECK_THROWS_AS(loadgen::parse_instant(bad), std::invalid_argument);
}

TEST_CASE("hgrm_text: the percentile table of a known distribution", "[unit]") {
    // 1..10000 µs once each: the value at percentile q is about q x 10 ms.
    iolab::Histogram h;
    for (uint64_t us = 1; us <= 10000; ++us)
        h.record(us * 1000);
    const std::string text = loadgen::hgrm_text(h);
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);
    CHECK(line.find("Value") != std::string::npos);
    CHECK(line.find("TotalCount") != std::string::npos);
    int rows = 0;
    double last_p = -1;
    bool saw_half = false;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        double v = 0, p = 0;
        unsigned long long n = 0;
        REQUIRE(std::sscanf(line.c_str(), "%lf %lf %llu", &v, &p, &n) == 3);
        INFO(line);
        CHECK(p > last_p);
        last_p = p;
        ++rows;
        // TotalCount is the values at or below the row's value (within its
        // bucket), and the value sits at the row's percentile.
        if (p > 0 && p < 1) CHECK(v == Approx(p * 10.0).epsilon(0.01));
        if (p == 0.5) {
            saw_half = true;
            CHECK(n >= 5000);
            CHECK(n <= 5040);
        }
    }
    CHECK(saw_half);
    CHECK(last_p == 1.0);
    CHECK(rows > 20);
    CHECK(text.find("#[Max     =    10.000000, Total count    =        10000]") !=
          std::string::npos);
    CHECK(text.find("#[Mean    =     5.000500") != std::string::npos);
    // An empty histogram: the header and the footer, no rows.
    const std::string empty = loadgen::hgrm_text(iolab::Histogram{});
    CHECK(empty.find("Total count    =            0]") != std::string::npos);
}

TEST_CASE("the adaptive wait's summary says when it could not watch CPU contention", "[unit]") {
    Options o;
    o.mode = loadgen::Mode::echo;
    o.target_names = {"127.0.0.1:9000"};
    o.duration_s = 3;
    o.busy_poll_auto = true;
    o.busy_poll_us = 50;
    Results r;
    r.duration_s = 3;
    r.requests = 1000;
    r.wait_total_ns = 3'000'000'000;
    r.wait_spin_ns = 3'000'000'000;
    const std::string blind_words = "CPU contention not watched: no /proc/thread-self/schedstat";
    SECTION("a run that read schedstat but for its first epoch") {
        r.wait_blind_ns = 20'000'000;
        CHECK(loadgen::summary_text(o, r).find(blind_words) == std::string::npos);
    }
    SECTION("a run without schedstat") {
        r.wait_blind_ns = 3'000'000'000;
        CHECK(loadgen::summary_text(o, r).find(blind_words) != std::string::npos);
        // The JSON keeps it, and merging reads it back.
        const nlohmann::json j = loadgen::to_json(o, r);
        CHECK(j["client"]["wait_blind_s"].get<double>() == Approx(3.0));
        Options oo;
        Results ro;
        round_trip(o, r, oo, ro);
        CHECK(ro.wait_blind_ns == r.wait_blind_ns);
        CHECK(loadgen::summary_text(oo, ro).find(blind_words) != std::string::npos);
    }
    SECTION("a report written before the key existed reads as watched") {
        nlohmann::json j = loadgen::to_json(o, r);
        j["client"].erase("wait_blind_s");
        Options oo;
        Results ro;
        loadgen::from_json(j, oo, ro);
        CHECK(ro.wait_blind_ns == 0);
    }
}
