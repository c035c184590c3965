// loadgen's output: the wrk-like summary, the JSON report, and the merge of
// several reports.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "clients/loadgen/engine.hpp"

namespace loadgen {

// What was asked, as printed in the header line and stored in the JSON.
struct RunInfo {
    std::string mode;
    std::vector<std::string> targets;  // "127.0.0.1:8080" or the URLs
    unsigned threads = 0;
    uint64_t connections = 0;
    uint64_t active = 0;  // idle mode
    double rate = 0;      // 0: closed loop
    double duration_s = 0;
    double warmup_s = 0;
    uint64_t requests = 0;
    std::size_t size = 0;
    int runs = 1;
};

// Numbers in a human unit: "52.3us", "1.20ms", "2.01s"; "1.5k"; "12.3MB".
std::string format_ns(double ns);

// The summary on stdout.
std::string summary_text(const RunInfo& info, const Results& r);

nlohmann::json to_json(const RunInfo& info, const Results& r);
// Reads a report back; throws std::runtime_error naming the missing or bad key.
void from_json(const nlohmann::json& j, RunInfo& info, Results& r);

// Several reports as one: histograms and counters added exactly; requests/s
// is the sum of the runs' rates (the runs ran at the same time, from several
// machines), the duration the longest.
void merge_into(RunInfo& info, Results& r, const RunInfo& other_info, const Results& other);

nlohmann::json histogram_json(const iolab::Histogram& h);
iolab::Histogram histogram_from_json(const nlohmann::json& j);

}  // namespace loadgen
