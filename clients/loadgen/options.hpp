// loadgen's command line turned into a Plan, and the preflight check of the
// system limits the run will meet.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "clients/loadgen/engine.hpp"

namespace loadgen {

// The options as given.
struct Options {
    std::string mode = "echo";
    std::string target;             // HOST:PORT (echo, raw, idle)
    std::vector<std::string> urls;  // http
    unsigned threads = 0;           // 0: the number of cores
    uint64_t connections = 10;
    double duration_s = 0;
    uint64_t requests = 0;
    double rate = 0;
    double ramp_s = 0;
    double warmup_s = 0;
    double timeout_s = 10;
    std::size_t size = 64;
    bool verify = false;
    std::string send;
    uint64_t expect_bytes = 0;
    bool expect_line = false;
    uint64_t active = 0;
    std::string source_addrs;
    std::string json_path;
    bool allow_errors = false;
    bool quiet = false;
};

// "PING\r\n" with the escapes \r \n \t \\ \0 and \xHH decoded; throws
// std::invalid_argument for an unknown or cut escape.
std::string unescape(std::string_view text);

// "127.0.0.2-127.0.0.20", "127.0.0.2,127.0.0.3" or a mix; IPv6 addresses one
// by one. Throws std::invalid_argument.
std::vector<iolab::SockAddr> parse_source_addrs(std::string_view text);

// Checks and resolves the options; throws std::invalid_argument naming the
// problem.
Plan make_plan(const Options& o);

// What the system allows against what the plan asks.
struct Preflight {
    uint64_t nofile = 0;  // soft RLIMIT_NOFILE after raising it to the hard limit
    uint64_t nofile_needed = 0;
    uint64_t ports = 0;         // ephemeral ports per (source, destination) pair
    uint64_t ports_needed = 0;  // the most connections of one source to one target
    uint64_t somaxconn = 0;
    uint64_t burst = 0;  // connections opened at once (no --ramp)
    std::size_t sources = 1;
    bool fatal = false;  // the run cannot do what was asked
    std::string line;    // "preflight: ... limit: ..."
};
Preflight preflight(const Plan& plan);

}  // namespace loadgen
