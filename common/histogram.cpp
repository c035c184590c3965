#include "common/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace iolab {

Histogram::Histogram() : counts_(kBuckets, 0) {}

void Histogram::merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i)
        counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

void Histogram::clear() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    count_ = sum_ = max_ = 0;
    min_ = UINT64_MAX;
}

double Histogram::mean() const noexcept {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
}

double Histogram::stdev() const noexcept {
    if (count_ < 2) return 0.0;
    const double m = mean();
    double acc = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        if (counts_[i] == 0) continue;
        double v = static_cast<double>(std::clamp(bucket_mid(i), min(), max_)) - m;
        acc += v * v * static_cast<double>(counts_[i]);
    }
    return std::sqrt(acc / static_cast<double>(count_));
}

uint64_t Histogram::percentile(double p) const noexcept {
    if (count_ == 0) return 0;
    if (p >= 100.0) return max_;
    if (p < 0) p = 0;
    // Nearest rank: the smallest value with at least p % of the samples at or
    // below it. The rank is computed in long double so that 99.99 % of a large
    // count does not round to the wrong side.
    long double exact = static_cast<long double>(p) / 100.0L * static_cast<long double>(count_);
    auto rank = static_cast<uint64_t>(std::ceil(exact - 1e-9L));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += counts_[i];
        if (seen >= rank) return std::clamp(bucket_mid(i), min(), max_);
    }
    return max_;
}

uint64_t Histogram::bucket_low(std::size_t index) noexcept {
    if (index < kLinear) return index;
    const std::size_t k = index - kLinear;
    const unsigned e = static_cast<unsigned>(k >> kSubBits) + kSubBits + 1;
    const uint64_t sub = (uint64_t{1} << kSubBits) + (k & ((std::size_t{1} << kSubBits) - 1));
    return sub << (e - kSubBits);
}

uint64_t Histogram::bucket_high(std::size_t index) noexcept {
    if (index < kLinear) return index;
    const std::size_t k = index - kLinear;
    const unsigned e = static_cast<unsigned>(k >> kSubBits) + kSubBits + 1;
    return bucket_low(index) + (uint64_t{1} << (e - kSubBits)) - 1;
}

uint64_t Histogram::bucket_mid(std::size_t index) noexcept {
    const uint64_t lo = bucket_low(index);
    return lo + (bucket_high(index) - lo + 1) / 2;
}

void Histogram::add_bucket(std::size_t index, uint64_t n) {
    if (index >= kBuckets)
        throw std::invalid_argument("histogram bucket " + std::to_string(index) +
                                    " out of range (" + std::to_string(kBuckets) + " buckets)");
    counts_[index] += n;
    count_ += n;
}

void Histogram::set_exact(uint64_t min, uint64_t max, uint64_t sum) {
    if (count_ > 0 && min > max)
        throw std::invalid_argument("histogram min " + std::to_string(min) + " > max " +
                                    std::to_string(max));
    if (count_ == 0) {
        min_ = UINT64_MAX;
        max_ = 0;
        sum_ = 0;
        return;
    }
    min_ = min;
    max_ = max;
    sum_ = sum;
}

}  // namespace iolab
