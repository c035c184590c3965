// loadgen's options: the one struct that the command line fills, that
// resolve() checks and completes, that the planner and the engine read, and
// that the report prints and stores. The preflight check of the system limits
// the run will meet lives here too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"

namespace loadgen {

enum class Mode { echo, http, raw, idle };
const char* mode_name(Mode m) noexcept;
// "echo" -> Mode::echo; throws std::invalid_argument for anything else.
Mode parse_mode(std::string_view name);

// One server address and the requests sent to it, in turn, on each connection.
struct Target {
    iolab::SockAddr addr;
    std::string name;                   // "127.0.0.1:8080"
    std::vector<std::string> requests;  // http: one GET per URL; raw: the --send bytes
};

// How long a worker looks for events without sleeping before it blocks in
// epoll_wait (µs): the spin arm of the adaptive wait (wait_policy.hpp),
// chosen by measurement (clients/loadgen/README.md).
inline constexpr double kDefaultBusyPollUs = 50;

struct Options {
    // ---- as given on the command line (defaults shown by --help) ----
    Mode mode = Mode::echo;
    std::string target;             // HOST:PORT (echo, raw, idle)
    std::vector<std::string> urls;  // http
    unsigned threads = 0;           // 0: the number of cores (resolve() fills it in)
    uint64_t connections = 10;
    double duration_s = 0;      // 0 with requests == 0: resolve() makes it 10
    uint64_t requests = 0;      // -n: complete this many, then stop
    double rate = 0;            // > 0: open loop, requests/s in total
    double ramp_s = 0;          // connection setup spread over this long
    double warmup_s = 0;        // requests done before this are not counted
    double timeout_s = 10;      // per request and per connect
    std::size_t size = 64;      // echo: bytes per request
    bool verify = false;        // echo: compare every byte
    std::string send;           // raw: the request, with escapes
    uint64_t expect_bytes = 0;  // raw: reply length
    bool expect_line = false;   // raw: reply ends at "\n"
    uint64_t active = 0;        // idle: connections running the echo workload
    std::string source_addrs;   // "127.0.0.2-127.0.0.20,..."
    std::string start_at;       // wall-clock instant the run starts at ("" = now)
    unsigned processes = 1;     // fork this many loadgens and merge their reports
    std::string json_path;
    std::string busy_poll = "auto";  // --busy-poll: "auto" or USEC
    int server_pid = 0;              // measure this process's CPU and switches
    std::string hdr_log_path;        // the latency histogram as HdrHistogram .hgrm
    bool allow_errors = false;
    bool quiet = false;

    // ---- filled in by resolve() ----
    std::vector<Target> targets;
    std::vector<std::string> target_names;  // what the report names: the URLs, or HOST:PORT
    std::vector<iolab::SockAddr> sources;   // bind(addr:0) with IP_BIND_ADDRESS_NO_PORT
    uint64_t timeout_ns = 10'000'000'000;
    double start_at_unix = 0;  // parsed start_at (0: none)
    bool live = false;         // workers publish a snapshot once a second
    // parsed busy_poll: auto measures spin (kDefaultBusyPollUs) against sleep
    // (0) during the run; else spin this long before sleeping (0: never).
    bool busy_poll_auto = true;
    double busy_poll_us = kDefaultBusyPollUs;
    // auto only: why the spin arm is ruled out for this run ("" = it is not):
    // every target is on this machine and the workers (threads x processes)
    // are as many as its CPUs, so a spinning worker could only spin on a CPU
    // the server needs (wait_policy.hpp, "rule").
    std::string spin_ruled_out;
};

// Whether an address is one of this machine's own (loopback, or an address
// of a local interface): bind() to it with port 0 succeeds only then.
bool is_local_address(const iolab::SockAddr& a);

// Checks the options, fills in the defaults that depend on others (threads,
// duration), resolves the targets and the source addresses. Throws
// std::invalid_argument naming the problem.
void resolve(Options& o);

// "PING\r\n" with the escapes \r \n \t \\ \0 and \xHH decoded; throws
// std::invalid_argument for an unknown or cut escape.
std::string unescape(std::string_view text);

// "127.0.0.2-127.0.0.20", "127.0.0.2,127.0.0.3" or a mix; IPv6 addresses one
// by one. Throws std::invalid_argument.
std::vector<iolab::SockAddr> parse_source_addrs(std::string_view text);

// A wall-clock instant as Unix seconds: "1764633600.25" or ISO-8601 UTC
// "2025-12-02T00:00:00.25Z" (a trailing Z or +00:00; no other zone).
// Throws std::invalid_argument.
double parse_instant(std::string_view text);

// What the system allows against what the options ask.
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
Preflight preflight(const Options& o);

}  // namespace loadgen
