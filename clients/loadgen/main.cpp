// loadgen — the suite's load generator for TCP servers (the C10K tool).
//
// Usage: loadgen [--mode echo] HOST:PORT [-c 100] [-d 10 | -n N] [--threads T]
//        loadgen --mode http --url http://127.0.0.1:8080/ [--url ...] ...
//        loadgen --mode raw --send 'PING\r\n' --expect-line HOST:PORT
//        loadgen --mode idle -c 10000 --active 100 HOST:PORT
//        loadgen ... --rate 10000 (open loop)  --ramp 2  --source-addrs 127.0.0.2-127.0.0.20
//        loadgen merge a.json b.json [--json all.json]
//
// Each of --threads workers runs its own epoll loop over its share of the
// connections (engine.cpp). Latency goes to a log-linear histogram
// (common/histogram.hpp) per worker, merged at the end. Closed loop by
// default: a connection sends its next request when the reply is in. --rate
// makes it an open loop where requests are due at fixed times and latency is
// counted from that time, not from the (possibly late) send: a stalled server
// then shows as the latency its waiting users would see (coordinated
// omission), with the uncorrected figure printed beside it.
//
// Output: a live line on stderr once a second when stderr is a terminal, the
// summary on stdout, --json FILE with every figure and the histograms. The
// exit code is 1 when any connection or request failed (unless
// --allow-errors), 2 for bad usage or limits that rule the run out.
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "clients/loadgen/engine.hpp"
#include "clients/loadgen/options.hpp"
#include "clients/loadgen/report.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"

namespace {

using namespace loadgen;

void write_json(const std::string& path, const nlohmann::json& j) {
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    f << j.dump(1) << '\n';
    if (!f) throw std::runtime_error("write " + path + " failed");
}

RunInfo info_of(const Options& o, const Plan& p) {
    RunInfo info;
    info.mode = mode_name(p.mode);
    if (p.mode == Mode::http)
        info.targets = o.urls;
    else
        info.targets = {p.targets[0].name};
    info.threads = p.threads;
    info.connections = p.connections;
    info.active = p.active;
    info.rate = p.rate;
    info.duration_s = p.duration_s;
    info.warmup_s = p.warmup_s;
    info.requests = p.requests;
    info.size = (p.mode == Mode::echo || p.mode == Mode::idle) ? p.size : 0;
    return info;
}

int run_load(const Options& o) {
    iolab::StopSignals stop;  // before any thread: workers inherit the blocked mask
    Plan plan = make_plan(o);
    Preflight pf = preflight(plan);
    if (!o.quiet || pf.fatal) iolab::log_line(pf.line);
    if (pf.fatal) return 2;
    plan.live = !o.quiet && ::isatty(STDERR_FILENO);

    Engine engine(plan);
    const uint64_t t0 = now_ns();
    engine.start();
    uint64_t next_line = t0 + 1'000'000'000;
    uint64_t last_requests = 0;
    uint64_t last_t = t0;
    bool live_printed = false;
    while (!engine.finished()) {
        pollfd pfd{stop.fd(), POLLIN, 0};
        ::poll(&pfd, 1, 50);
        if (stop.check()) {
            engine.request_stop();
            break;
        }
        const uint64_t now = now_ns();
        if (plan.live && now >= next_line) {
            LiveSnapshot s = engine.live();
            const double dt = static_cast<double>(now - last_t) / 1e9;
            std::string line =
                fmt::format("\r[{:>5.0f}s] open {:>6}  req/s {:>10.0f}  p99 {:>9}  errors {}   ",
                            static_cast<double>(now - t0) / 1e9, s.open,
                            static_cast<double>(s.requests - last_requests) / dt,
                            format_ns(static_cast<double>(s.latency.percentile(99))), s.errors);
            [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
            live_printed = true;
            last_requests = s.requests;
            last_t = now;
            next_line += 1'000'000'000;
        }
    }
    if (live_printed) iolab::log_line("");
    Results r = engine.join();
    RunInfo info = info_of(o, plan);
    std::string text = summary_text(info, r);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (!o.json_path.empty()) write_json(o.json_path, to_json(info, r));
    const bool failed = r.error_total() > 0 || r.connect_failures > 0;
    return failed && !o.allow_errors ? 1 : 0;
}

int run_merge(const std::vector<std::string>& files, const std::string& out, bool allow_errors) {
    RunInfo info;
    Results r;
    bool first = true;
    for (const auto& path : files) {
        std::ifstream f(path);
        if (!f) throw std::runtime_error("cannot open " + path);
        nlohmann::json j;
        try {
            f >> j;
        } catch (const std::exception& e) {
            throw std::runtime_error(path + ": " + e.what());
        }
        RunInfo i;
        Results one;
        try {
            from_json(j, i, one);
        } catch (const std::exception& e) {
            throw std::runtime_error(path + ": " + e.what());
        }
        if (first) {
            info = i;
            r = std::move(one);
            first = false;
        } else {
            merge_into(info, r, i, one);
        }
    }
    std::string text = summary_text(info, r);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (!out.empty()) write_json(out, to_json(info, r));
    return r.error_total() > 0 && !allow_errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{
        "loadgen: a load generator for TCP servers (echo, HTTP/1.1, request/response, idle)"};
    iolab::setup_program(app, "loadgen",
                         "Exit codes:\n"
                         "  0  the run finished and every request succeeded\n"
                         "  1  runtime error, or requests failed (see the summary)\n"
                         "  2  usage error");
    app.add_option("target", o.target, "HOST:PORT (echo, raw, idle)");
    app.add_option("--mode", o.mode, "echo | http | raw | idle")
        ->check(CLI::IsMember({"echo", "http", "raw", "idle"}))
        ->capture_default_str();
    app.add_option("--url", o.urls, "http: URL to GET (repeat for several)");
    app.add_option("--threads", o.threads,
                   "Worker threads, each with its own epoll loop (default: cores)");
    app.add_option("-c,--connections", o.connections, "Connections")->capture_default_str();
    app.add_option("-d,--duration", o.duration_s, "Seconds to run (default 10 without -n)");
    app.add_option("-n,--requests", o.requests, "Requests to complete, then stop");
    app.add_option("--rate", o.rate,
                   "Open loop: requests/s in total (latency from the intended send)");
    app.add_option("--ramp", o.ramp_s, "Spread connection setup over this many seconds");
    app.add_option("--warmup", o.warmup_s,
                   "Seconds at the start whose requests are not counted (errors still are)");
    app.add_option("--timeout", o.timeout_s, "Seconds a connect or a request may take")
        ->capture_default_str();
    app.add_option("--size", o.size, "echo: bytes per request")->capture_default_str();
    app.add_flag("--verify", o.verify, "echo: check every byte of every echo");
    app.add_option("--send", o.send, "raw: the request (escapes \\r \\n \\t \\\\ \\0 \\xHH)");
    app.add_option("--expect-bytes", o.expect_bytes, "raw: the reply is this many bytes");
    app.add_flag("--expect-line", o.expect_line, "raw: the reply ends with \\n");
    app.add_option("--active", o.active, "idle: this many connections run the echo workload");
    app.add_option("--source-addrs", o.source_addrs,
                   "Local addresses to spread connections over: 127.0.0.2-127.0.0.20,...");
    app.add_option("--json", o.json_path, "Write every figure and the histograms to FILE");
    app.add_flag("--allow-errors", o.allow_errors, "Exit 0 even when requests failed");
    app.add_flag("-q,--quiet", o.quiet, "No preflight or live line on stderr");

    std::vector<std::string> merge_files;
    std::string merge_out;
    bool merge_allow = false;
    CLI::App* merge =
        app.add_subcommand("merge", "Merge --json reports of runs made at the same time");
    merge->add_option("files", merge_files, "Reports")->required()->check(CLI::ExistingFile);
    merge->add_option("--json", merge_out, "Write the merged report to FILE");
    merge->add_flag("--allow-errors", merge_allow, "Exit 0 even when the runs had errors");
    app.require_subcommand(0, 1);

    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("loadgen", [&]() -> int {
        if (merge->parsed()) return run_merge(merge_files, merge_out, merge_allow);
        try {
            return run_load(o);
        } catch (const std::invalid_argument& e) {
            iolab::log_line(std::string("loadgen: ") + e.what());
            return 2;
        }
    });
}
