// loadgen — the suite's load generator for TCP servers (the C10K tool).
//
// Usage: loadgen [--mode echo] HOST:PORT [-c 100] [-d 10 | -n N] [--threads T]
//        loadgen --mode http --url http://127.0.0.1:8080/ [--url ...] ...
//        loadgen --mode raw --send 'PING\r\n' --expect-line HOST:PORT
//        loadgen --mode idle -c 10000 --active 100 HOST:PORT
//        loadgen ... --rate 10000 (open loop)  --ramp 2  --source-addrs 127.0.0.2-127.0.0.20
//        loadgen ... --start-at 1764633600.5   (several processes, one window)
//        loadgen ... --processes 6 --source-addrs 127.0.0.2-127.0.0.7
//        loadgen merge a.json b.json [--json all.json]
//
// Each of --threads workers runs its own epoll loop over its share of the
// connections (engine.cpp; plan.cpp decides the shares). Latency goes to a
// log-linear histogram (common/histogram.hpp) per worker, merged at the end.
// Closed loop by default: a connection sends its next request when the reply
// is in. --rate makes it an open loop where requests are due at fixed times
// and latency is counted from that time, not from the (possibly late) send: a
// stalled server then shows as the latency its waiting users would see
// (coordinated omission), with the uncorrected figure printed beside it.
//
// Output: a live line on stderr once a second when stderr is a terminal, the
// summary on stdout, --json FILE with every figure and the histograms. The
// exit code is 1 when any connection or request failed (unless
// --allow-errors), 2 for bad usage or limits that rule the run out.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "clients/loadgen/engine.hpp"
#include "clients/loadgen/options.hpp"
#include "clients/loadgen/report.hpp"
#include "common/error.hpp"
#include "common/program.hpp"
#include "common/signals.hpp"

namespace {

using namespace loadgen;

void write_json(const std::string& path, const nlohmann::json& j) {
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    f << j.dump(1) << '\n';
    if (!f) throw std::runtime_error("write " + path + " failed");
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    f << text;
    if (!f) throw std::runtime_error("write " + path + " failed");
}

// The files a run writes besides the summary: --json and --hdr-log.
void write_outputs(const Options& o, const Results& r) {
    if (!o.json_path.empty()) write_json(o.json_path, to_json(o, r));
    if (!o.hdr_log_path.empty()) write_text(o.hdr_log_path, hgrm_text(r.latency));
}

// --server-pid: the server's CPU time and switches from the start of the
// measured window (taken on time by the waiting loop) to its end.
class ServerWindow {
  public:
    explicit ServerWindow(int pid) : pid_(pid) {}
    // Takes the first reading once `now` has reached `from` (monotonic ns).
    void maybe_begin(uint64_t now, uint64_t from) {
        if (pid_ <= 0 || begun_ || now < from) return;
        first_ = process_usage(pid_);
        begun_ = true;
    }
    // Takes the last reading once `now` has reached `to` (0: at the finish).
    void maybe_end(uint64_t now, uint64_t to) {
        if (pid_ <= 0 || !begun_ || ended_ || to == 0 || now < to) return;
        last_ = process_usage(pid_);
        ended_ = true;
    }
    // Takes the last reading now, unless taken already.
    void end_now() {
        if (pid_ <= 0 || !begun_ || ended_) return;
        last_ = process_usage(pid_);
        ended_ = true;
    }
    // How long the waiting loop may sleep before the next reading is due.
    [[nodiscard]] uint64_t sleep_ns(uint64_t now, uint64_t from, uint64_t to, uint64_t dflt) const {
        if (pid_ <= 0) return dflt;
        uint64_t next = 0;
        if (!begun_)
            next = from;
        else if (!ended_ && to != 0)
            next = to;
        else
            return dflt;
        return next <= now ? 0 : std::min(dflt, next - now);
    }
    void finish(Results& r) {
        if (pid_ <= 0) return;
        if (!ended_) last_ = process_usage(pid_);
        if (!begun_ || !first_.ok || !last_.ok) {
            iolab::log_line(fmt::format(
                "loadgen: --server-pid {}: the process could not be read over the whole run "
                "(gone?): no server figures",
                pid_));
            return;
        }
        r.server_pid = pid_;
        r.server_cpu_s = last_.cpu_s - first_.cpu_s;
        std::tie(r.server_vcsw, r.server_ivcsw) = switches_between(first_, last_);
    }

  private:
    int pid_;
    bool begun_ = false, ended_ = false;
    ProcessUsage first_, last_;
};

void print(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

double unix_now() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The --start-at instant on the monotonic clock the workers use (0: now).
uint64_t start_instant(const Options& o) {
    if (o.start_at_unix <= 0) return 0;
    const double ahead = o.start_at_unix - unix_now();
    if (ahead < 0) {
        iolab::log_line(fmt::format("loadgen: --start-at {} is {:.3f} s past: starting now",
                                    o.start_at, -ahead));
        return 0;
    }
    return now_ns() + static_cast<uint64_t>(std::llround(ahead * 1e9));
}

// Once a second on stderr (a terminal): elapsed, open, req/s, p99, errors.
class LiveLine {
  public:
    explicit LiveLine(uint64_t t0) : t0_(t0), last_t_(t0), next_(t0 + 1'000'000'000) {}
    void tick(const Engine& engine, uint64_t now) {
        if (now < next_) return;
        LiveSnapshot s = engine.live();
        const double dt = static_cast<double>(now - last_t_) / 1e9;
        std::string line =
            fmt::format("\r[{:>5.0f}s] open {:>6}  req/s {:>10.0f}  p99 {:>9}  errors {}   ",
                        static_cast<double>(now - t0_) / 1e9, s.open,
                        static_cast<double>(s.requests - last_requests_) / dt,
                        format_ns(static_cast<double>(s.latency.percentile(99))), s.errors);
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
        printed_ = true;
        last_requests_ = s.requests;
        last_t_ = now;
        next_ += 1'000'000'000;
    }
    ~LiveLine() {
        if (printed_) iolab::log_line("");
    }
    LiveLine(const LiveLine&) = delete;
    LiveLine& operator=(const LiveLine&) = delete;

  private:
    uint64_t t0_, last_t_, next_;
    uint64_t last_requests_ = 0;
    bool printed_ = false;
};

// One run in this process. `o` is resolved.
int run_load(Options& o, bool print_summary = true) {
    iolab::StopSignals stop;  // before any thread: workers inherit the blocked mask
    Preflight pf = preflight(o);
    if (!o.quiet || pf.fatal) iolab::log_line(pf.line);
    if (pf.fatal) return 2;
    o.live = !o.quiet && ::isatty(STDERR_FILENO);

    Engine engine(o);
    ServerWindow server(o.server_pid);
    const uint64_t asked = start_instant(o);
    // With no warm-up and no later start the window opens now: read the
    // server before the workers run.
    if (o.warmup_s <= 0 && asked == 0) server.maybe_begin(1, 0);
    engine.start(asked);
    const uint64_t from = engine.started_at() + static_cast<uint64_t>(o.warmup_s * 1e9);
    const uint64_t to =
        o.duration_s > 0 ? engine.started_at() + static_cast<uint64_t>(o.duration_s * 1e9) : 0;
    {
        LiveLine live(now_ns());
        while (!engine.finished()) {
            const uint64_t sleep = server.sleep_ns(now_ns(), from, to, 50'000'000);
            const timespec ts{0, static_cast<long>(sleep)};
            pollfd pfd{stop.fd(), POLLIN, 0};
            ::ppoll(&pfd, 1, &ts, nullptr);
            if (stop.check()) {
                engine.request_stop();
                break;
            }
            const uint64_t now = now_ns();
            server.maybe_begin(now, from);
            server.maybe_end(now, to);
            if (o.live) live.tick(engine, now);
        }
    }
    // The server's last reading before the connections close (join): their
    // closing is not part of the run, and a thread-per-connection server's
    // threads, whose switches are counted per thread, are still there.
    Results r;
    server.end_now();
    r = engine.join();
    server.finish(r);
    if (print_summary) print(summary_text(o, r));
    write_outputs(o, r);
    const bool failed = r.error_total() > 0 || r.connect_failures > 0;
    return failed && !o.allow_errors ? 1 : 0;
}

// Reads reports and adds them up; throws naming the file at fault.
void merge_files(const std::vector<std::string>& files, Options& o, Results& r) {
    bool first = true;
    for (const auto& path : files) {
        std::ifstream f(path);
        if (!f) throw std::runtime_error("cannot open " + path);
        Options oi;
        Results one;
        try {
            nlohmann::json j;
            f >> j;
            from_json(j, oi, one);
        } catch (const std::exception& e) {
            throw std::runtime_error(path + ": " + e.what());
        }
        if (first) {
            o = std::move(oi);
            r = std::move(one);
            first = false;
        } else {
            merge_into(o, r, oi, one);
        }
    }
}

int run_merge(const std::vector<std::string>& files, const std::string& out,
              const std::string& hdr_out, bool allow_errors) {
    Options o;
    Results r;
    merge_files(files, o, r);
    print(summary_text(o, r));
    if (!out.empty()) write_json(out, to_json(o, r));
    if (!hdr_out.empty()) write_text(hdr_out, hgrm_text(r.latency));
    return r.error_total() > 0 && !allow_errors ? 1 : 0;
}

// Share p of n of a total: the shares add up to the total exactly.
uint64_t share(uint64_t total, unsigned p, unsigned n) {
    return total * (p + 1) / n - total * p / n;
}

// The options of child p of --processes n.
Options child_options(const Options& o, unsigned p, const std::string& json) {
    Options c = o;
    const unsigned n = o.processes;
    c.processes = 1;
    c.connections = share(o.connections, p, n);
    c.active = share(o.active, p, n);
    // -n and --rate follow the connections that run the workload.
    const uint64_t working = o.mode == Mode::idle ? o.active : o.connections;
    const uint64_t mine = o.mode == Mode::idle ? c.active : c.connections;
    if (o.requests) {
        uint64_t before = 0;
        for (unsigned k = 0; k < p; ++k)
            before += o.mode == Mode::idle ? share(o.active, k, n) : share(o.connections, k, n);
        c.requests = o.requests * (before + mine) / working - o.requests * before / working;
    }
    if (o.rate > 0) c.rate = o.rate * static_cast<double>(mine) / static_cast<double>(working);
    if (!o.sources.empty()) {
        // Source addresses dealt out like cards: process p binds those whose
        // index is p mod n (or one shared address when there are fewer).
        c.sources.clear();
        for (std::size_t k = p; k < o.sources.size(); k += n)
            c.sources.push_back(o.sources[k]);
        if (c.sources.empty()) c.sources.push_back(o.sources[p % o.sources.size()]);
    }
    c.threads = static_cast<unsigned>(std::min<uint64_t>(o.threads, c.connections));
    c.json_path = json;
    c.hdr_log_path.clear();
    c.server_pid = 0;  // the parent reads the server over the common window
    return c;
}

// --processes N: N forked loadgens, one common start instant, one report each,
// merged here. Forked before any thread exists; each child runs run_load on
// its share and leaves with _exit.
int run_processes(Options& o) {
    if (o.start_at_unix <= 0) {
        // Time for the children to start and check their limits.
        o.start_at_unix = unix_now() + 1.0;
        o.start_at = fmt::format("{:.6f}", o.start_at_unix);
    }
    char tmpl[] = "/tmp/loadgen-processes-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) iolab::throw_sys("mkdtemp", tmpl);
    const std::filesystem::path dir = tmpl;
    struct Cleanup {
        std::filesystem::path dir;
        ~Cleanup() {
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        }
    } cleanup{dir};
    iolab::StopSignals stop;
    // The children start at start_at_unix: the server's window, on the
    // monotonic clock, opens then (plus the warm-up) and closes -d later.
    const uint64_t t0 =
        now_ns() + static_cast<uint64_t>(std::max(0.0, o.start_at_unix - unix_now()) * 1e9);
    const uint64_t from = t0 + static_cast<uint64_t>(o.warmup_s * 1e9);
    const uint64_t to = o.duration_s > 0 ? t0 + static_cast<uint64_t>(o.duration_s * 1e9) : 0;
    ServerWindow server(o.server_pid);
    std::vector<pid_t> pids;
    std::vector<std::string> files;
    for (unsigned p = 0; p < o.processes; ++p) {
        files.push_back((dir / fmt::format("{}.json", p)).string());
        Options c = child_options(o, p, files.back());
        std::fflush(nullptr);
        const pid_t pid = ::fork();
        if (pid < 0) {
            for (pid_t k : pids)
                ::kill(k, SIGTERM);
            iolab::throw_sys("fork", "loadgen --processes");
        }
        if (pid == 0) {
            int rc = 1;
            try {
                rc = run_load(c, false);
            } catch (const std::exception& e) {
                iolab::log_line(fmt::format("loadgen (process {}): {}", p, e.what()));
            }
            std::fflush(nullptr);
            ::_exit(rc);
        }
        pids.push_back(pid);
    }
    int worst = 0;
    std::size_t left = pids.size();
    while (left > 0) {
        const uint64_t sleep = server.sleep_ns(now_ns(), from, to, 50'000'000);
        const timespec ts{0, static_cast<long>(sleep)};
        pollfd pfd{stop.fd(), POLLIN, 0};
        ::ppoll(&pfd, 1, &ts, nullptr);
        server.maybe_begin(now_ns(), from);
        server.maybe_end(now_ns(), to);
        if (stop.check())
            for (pid_t k : pids)
                if (k > 0) ::kill(k, SIGTERM);
        for (pid_t& k : pids) {
            int status = 0;
            if (k <= 0 || ::waitpid(k, &status, WNOHANG) != k) continue;
            const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
            worst = std::max(worst, rc);
            k = -1;
            --left;
        }
    }
    if (worst >= 2) return worst;  // a child's usage error or preflight: it said why
    Options merged;
    Results r;
    merge_files(files, merged, r);
    server.finish(r);
    merged.busy_poll_us = o.busy_poll_us;
    merged.busy_poll_auto = o.busy_poll_auto;
    merged.json_path = o.json_path;
    merged.hdr_log_path = o.hdr_log_path;
    print(summary_text(merged, r));
    write_outputs(merged, r);
    const bool failed = r.error_total() > 0 || r.connect_failures > 0 || worst != 0;
    return failed && !o.allow_errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    std::string mode = "echo";
    CLI::App app{
        "loadgen: a load generator for TCP servers (echo, HTTP/1.1, request/response, idle)"};
    iolab::setup_program(app, "loadgen",
                         "Exit codes:\n"
                         "  0  the run finished and every request succeeded\n"
                         "  1  runtime error, or requests failed (see the summary)\n"
                         "  2  usage error, or a preflight that rules the run out");
    app.add_option("target", o.target, "HOST:PORT (echo, raw, idle)");
    app.add_option("--mode", mode, "echo | http | raw | idle")
        ->check(CLI::IsMember({"echo", "http", "raw", "idle"}))
        ->capture_default_str();
    app.add_option("--url", o.urls, "http: URL to GET (repeat for several)");
    app.add_option("--threads", o.threads,
                   "Worker threads, each with its own epoll loop (default: the CPUs it may "
                   "run on, as taskset and sched_getaffinity say; with "
                   "--processes: per process, default 1)");
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
    app.add_option("--start-at", o.start_at,
                   "Wall-clock instant the run starts at (first connects, duration, warm-up): "
                   "Unix seconds 1764633600.25 or ISO-8601 UTC 2025-12-02T00:00:00.25Z");
    app.add_option("--processes", o.processes,
                   "Fork N loadgens, each with 1/N of -c, -n, --rate and of the "
                   "--source-addrs, all starting at --start-at (default: 1 s from now); "
                   "prints and writes their merged report")
        ->capture_default_str();
    app.add_option("--json", o.json_path, "Write every figure and the histograms to FILE");
    app.add_option("--hdr-log", o.hdr_log_path,
                   "Write the latency histogram to FILE in HdrHistogram's percentile-distribution "
                   "text format (.hgrm; values in milliseconds), for its plotter");
    app.add_option("--busy-poll", o.busy_poll,
                   "Microseconds a worker keeps looking for events (epoll_wait, timeout 0) "
                   "before it sleeps; 0: sleep at once; auto: 50 while the workers have CPUs to "
                   "themselves, 0 when a worker waits for a CPU, when spins find nothing, or "
                   "when the server is on this machine and the workers are as many as its "
                   "CPUs (README: how loadgen waits)")
        ->capture_default_str();
    app.add_option("--server-pid", o.server_pid,
                   "Also measure this process (all its threads) over the run: its CPU and "
                   "context switches per request");
    app.add_flag("--allow-errors", o.allow_errors, "Exit 0 even when requests failed");
    app.add_flag("-q,--quiet", o.quiet, "No preflight or live line on stderr");

    std::vector<std::string> merge_paths;
    std::string merge_out;
    bool merge_allow = false;
    CLI::App* merge = app.add_subcommand(
        "merge",
        "Merge --json reports of runs made at the same time: loadgen merge A.json B.json "
        "... [--json OUT.json]");
    merge->add_option("files", merge_paths, "Reports")->required()->check(CLI::ExistingFile);
    merge->add_option("--json", merge_out, "Write the merged report to FILE");
    std::string merge_hdr;
    merge->add_option("--hdr-log", merge_hdr, "Write the merged latency histogram as .hgrm");
    merge->add_flag("--allow-errors", merge_allow, "Exit 0 even when the runs had errors");
    app.require_subcommand(0, 1);

    IOLAB_PARSE(app, argc, argv);
    const bool threads_given = app.count("--threads") > 0;
    return iolab::guarded_main("loadgen", [&]() -> int {
        if (merge->parsed()) return run_merge(merge_paths, merge_out, merge_hdr, merge_allow);
        try {
            o.mode = parse_mode(mode);
            if (o.processes > 1 && !threads_given) o.threads = 1;
            resolve(o);
        } catch (const std::invalid_argument& e) {
            return iolab::usage_error(app, e.what());
        }
        return o.processes > 1 ? run_processes(o) : run_load(o);
    });
}
