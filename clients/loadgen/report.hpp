// loadgen's output: the wrk-like summary, the JSON report, and the merge of
// several reports.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "clients/loadgen/engine.hpp"
#include "clients/loadgen/options.hpp"

namespace loadgen {

// Numbers in a human unit: "52.3us", "1.20ms", "2.01s"; "1.5k"; "12.3MB".
std::string format_ns(double ns);

// The summary on stdout.
std::string summary_text(const Options& o, const Results& r);

nlohmann::json to_json(const Options& o, const Results& r);
// Throws std::runtime_error naming the missing or bad key.
// Reads a report back into the options it was run with and its figures (the
// options a report does not keep stay as they are).
void from_json(const nlohmann::json& j, Options& o, Results& r);

// Several reports as one: histograms and counters added exactly; requests/s
// is the sum of the runs' rates (the runs ran at the same time, from several
// machines), the duration the longest.
void merge_into(Options& o, Results& r, const Options& other_opts, const Results& other);

nlohmann::json histogram_json(const iolab::Histogram& h);

// The histogram as HdrHistogram's percentile-distribution text (.hgrm), the
// format its plotter reads: a "Value Percentile TotalCount 1/(1-Percentile)"
// table at percentiles that close in on 100 (5 steps per halving of the
// distance left) and the #[Mean ...], #[Max ...], #[Buckets ...] footer.
// Values are divided by `unit_ratio` (1e6: recorded ns shown as ms) and
// printed with `decimals` digits.
std::string hgrm_text(const iolab::Histogram& h, double unit_ratio = 1e6, int decimals = 6);
iolab::Histogram histogram_from_json(const nlohmann::json& j);

}  // namespace loadgen
