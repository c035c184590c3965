// common/histogram: percentiles against the exact ones of known samples,
// bucket layout, exact merge.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "common/histogram.hpp"

using iolab::Histogram;

namespace {

// The nearest-rank percentile of sorted samples.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, double p) {
    if (p >= 100) return sorted.back();
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

double rel_error(uint64_t got, uint64_t want) {
    if (want == 0) return got == 0 ? 0 : 1;
    return std::abs(static_cast<double>(got) - static_cast<double>(want)) /
           static_cast<double>(want);
}

}  // namespace

TEST_CASE("histogram buckets tile the range without gaps", "[histogram]") {
    CHECK(Histogram::bucket_low(0) == 0);
    for (std::size_t i = 1; i < Histogram::kBuckets; ++i) {
        INFO("bucket " << i);
        REQUIRE(Histogram::bucket_low(i) == Histogram::bucket_high(i - 1) + 1);
        REQUIRE(Histogram::index_of(Histogram::bucket_low(i)) == i);
        REQUIRE(Histogram::index_of(Histogram::bucket_high(i)) == i);
        // never wider than 1/128 of the values in it
        const uint64_t width = Histogram::bucket_high(i) - Histogram::bucket_low(i) + 1;
        REQUIRE(width * 128 <= std::max<uint64_t>(Histogram::bucket_low(i), 128));
    }
    CHECK(Histogram::bucket_high(Histogram::kBuckets - 1) == Histogram::kMaxTrackable);
    CHECK(Histogram::index_of(UINT64_MAX) == Histogram::kBuckets - 1);
    // 1 us resolution in nanoseconds up to 131 us
    CHECK(Histogram::bucket_high(Histogram::index_of(131'000)) -
              Histogram::bucket_low(Histogram::index_of(131'000)) + 1 <=
          1000);
}

TEST_CASE("small values are exact", "[histogram]") {
    Histogram h;
    for (uint64_t v = 0; v < 256; ++v)
        h.record(v);
    CHECK(h.count() == 256);
    CHECK(h.min() == 0);
    CHECK(h.max() == 255);
    CHECK(h.percentile(50) == 127);  // rank 128 of 0..255
    CHECK(h.percentile(99) == 253);  // rank ceil(253.44) = 254
    CHECK(h.percentile(100) == 255);
    CHECK(h.mean() == Approx(127.5));
}

TEST_CASE("percentiles of known samples are within 0.4 % of the exact ones", "[histogram]") {
    std::mt19937_64 rng(42);
    // Latency-like: log-uniform from 1 us to 10 s in nanoseconds, plus a spike.
    std::uniform_real_distribution<double> logu(std::log(1e3), std::log(1e10));
    std::vector<uint64_t> samples;
    for (int i = 0; i < 200'000; ++i)
        samples.push_back(static_cast<uint64_t>(std::exp(logu(rng))));
    for (int i = 0; i < 5'000; ++i)
        samples.push_back(50'000 + static_cast<uint64_t>(i % 7));
    Histogram h;
    for (auto v : samples)
        h.record(v);
    std::sort(samples.begin(), samples.end());
    for (double p : {1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
        INFO("p" << p);
        uint64_t want = exact_percentile(samples, p);
        CHECK(rel_error(h.percentile(p), want) <= 1.0 / 256 + 1e-12);
    }
    CHECK(h.min() == samples.front());
    CHECK(h.max() == samples.back());
    long double sum = 0;
    for (auto v : samples)
        sum += static_cast<long double>(v);
    CHECK(h.mean() == Approx(static_cast<double>(sum / samples.size())).epsilon(1e-9));
    // stdev from bucket midpoints: within 1 % of the exact one
    long double m = sum / samples.size(), acc = 0;
    for (auto v : samples)
        acc += (v - m) * (v - m);
    double exact_sd = std::sqrt(static_cast<double>(acc / samples.size()));
    CHECK(h.stdev() == Approx(exact_sd).epsilon(0.01));
}

TEST_CASE("a percentile falls on the right side of a rank boundary", "[histogram]") {
    Histogram h;
    // 9999 samples at 1000 ns and one at 5 ms: p99.99 is rank 9999.
    h.record_n(1000, 9999);
    h.record(5'000'000);
    // (reported as bucket midpoints: within 1/256 of the sample)
    CHECK(rel_error(h.percentile(99.99), 1000) <= 1.0 / 256);
    CHECK(rel_error(h.percentile(99.995), 5'000'000) <= 1.0 / 256);
    CHECK(rel_error(h.percentile(50), 1000) <= 1.0 / 256);
    CHECK(h.percentile(100) == 5'000'000);
    Histogram empty;
    CHECK(empty.percentile(99) == 0);
    CHECK(empty.count() == 0);
    CHECK(empty.min() == 0);
    CHECK(empty.stdev() == 0);
}

TEST_CASE("merging gives what one histogram of both streams holds", "[histogram]") {
    std::mt19937_64 rng(7);
    std::exponential_distribution<double> expo(1.0 / 200'000);
    Histogram a, b, both;
    for (int i = 0; i < 50'000; ++i) {
        auto v = static_cast<uint64_t>(expo(rng));
        (i % 3 ? a : b).record(v);
        both.record(v);
    }
    Histogram m;
    m.merge(a);
    m.merge(b);
    CHECK(m.counts() == both.counts());
    CHECK(m.count() == both.count());
    CHECK(m.sum() == both.sum());
    CHECK(m.min() == both.min());
    CHECK(m.max() == both.max());
    for (double p : {50.0, 99.0, 99.9})
        CHECK(m.percentile(p) == both.percentile(p));
    // and restoring from parts (as a report does) is exact too
    Histogram r;
    for (std::size_t i = 0; i < Histogram::kBuckets; ++i)
        r.add_bucket(i, m.counts()[i]);
    r.set_exact(m.min(), m.max(), m.sum());
    CHECK(r.percentile(99.9) == m.percentile(99.9));
    CHECK(r.mean() == m.mean());
    CHECK_THROWS_AS(r.add_bucket(Histogram::kBuckets, 1), std::invalid_argument);
}

TEST_CASE("values past the range land in the last bucket, max stays exact", "[histogram]") {
    Histogram h;
    h.record(uint64_t{1} << 50);
    CHECK(h.counts().back() == 1);
    CHECK(h.max() == uint64_t{1} << 50);
    CHECK(h.percentile(50) == uint64_t{1} << 50);  // clamped to [min, max]
}
