// Histogram: a log-linear latency histogram, fixed size, mergeable exactly.
//
//     iolab::Histogram h;            // one per thread: record() is not atomic
//     h.record(elapsed_ns);
//     total.merge(h);                // at the end: exact, order does not matter
//     total.percentile(99.9);        // nearest-rank, within 0.4 %
//
// Values are unsigned integers in whatever unit the caller picks (loadgen
// records nanoseconds). Values below 256 each have a bucket of their own; above
// that every power of two [2^e, 2^(e+1)) is cut into 128 equal buckets, so a
// bucket is never wider than 1/128 of its lowest value. A bucket reports its
// midpoint, which is within 1/256 (0.39 %) of any value recorded in it. In
// nanoseconds the buckets are at most 1 µs wide up to 131 µs, and the range
// ends at 2^40 ns (18 minutes): larger values land in the last bucket (the exact
// maximum is kept apart). min, max, count and sum are exact, so the mean is too.
//
// Recording is an index computation (a count-leading-zeros and two shifts) and
// one increment: no allocation, no lock. The counts live in one vector
// allocated by the constructor (about 34 KiB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace iolab {

class Histogram {
  public:
    static constexpr unsigned kSubBits = 7;                             // 128 buckets per octave
    static constexpr uint64_t kLinear = uint64_t{1} << (kSubBits + 1);  // exact below 256
    static constexpr unsigned kMaxExponent = 40;                        // values < 2^40 are tracked
    static constexpr std::size_t kBuckets =
        kLinear + (kMaxExponent - (kSubBits + 1)) * (std::size_t{1} << kSubBits);
    static constexpr uint64_t kMaxTrackable = (uint64_t{1} << kMaxExponent) - 1;

    Histogram();

    void record(uint64_t value) noexcept { record_n(value, 1); }
    void record_n(uint64_t value, uint64_t n) noexcept {
        if (n == 0) return;
        counts_[index_of(value)] += n;
        count_ += n;
        sum_ += value * n;
        if (value < min_) min_ = value;
        if (value > max_) max_ = value;
    }
    // Adds every count of `other`: the result is what one histogram would hold
    // had it recorded both streams.
    void merge(const Histogram& other) noexcept;
    void clear() noexcept;

    [[nodiscard]] uint64_t count() const noexcept { return count_; }
    [[nodiscard]] uint64_t sum() const noexcept { return sum_; }
    [[nodiscard]] uint64_t min() const noexcept { return count_ ? min_ : 0; }
    [[nodiscard]] uint64_t max() const noexcept { return max_; }
    [[nodiscard]] double mean() const noexcept;
    // From the bucket midpoints (exact mean), so merged histograms agree.
    [[nodiscard]] double stdev() const noexcept;
    // The nearest-rank percentile: the value with rank ceil(p/100 * count),
    // reported as its bucket's midpoint clamped to [min, max]. p in [0, 100];
    // p = 100 gives the exact max. 0 for an empty histogram.
    [[nodiscard]] uint64_t percentile(double p) const noexcept;

    // The bucket a value falls in, and the inclusive range of a bucket.
    [[nodiscard]] static std::size_t index_of(uint64_t value) noexcept {
        if (value < kLinear) return static_cast<std::size_t>(value);
        if (value > kMaxTrackable) value = kMaxTrackable;
        const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(value));  // >= 8
        const unsigned shift = e - kSubBits;
        const uint64_t sub = (value >> shift) - (uint64_t{1} << kSubBits);  // 0..127
        return static_cast<std::size_t>(kLinear + (e - (kSubBits + 1)) * (uint64_t{1} << kSubBits) +
                                        sub);
    }
    [[nodiscard]] static uint64_t bucket_low(std::size_t index) noexcept;
    [[nodiscard]] static uint64_t bucket_high(std::size_t index) noexcept;
    // The value a bucket stands for: its midpoint (rounded down).
    [[nodiscard]] static uint64_t bucket_mid(std::size_t index) noexcept;

    [[nodiscard]] const std::vector<uint64_t>& counts() const noexcept { return counts_; }
    // Restores a histogram from its parts (as written by a report): the counts
    // per bucket plus the exact min, max and sum. Throws std::invalid_argument
    // when they do not fit together (index out of range, min > max).
    void add_bucket(std::size_t index, uint64_t n);
    void set_exact(uint64_t min, uint64_t max, uint64_t sum);

  private:
    std::vector<uint64_t> counts_;
    uint64_t count_ = 0;
    uint64_t sum_ = 0;
    uint64_t min_ = UINT64_MAX;
    uint64_t max_ = 0;
};

}  // namespace iolab
