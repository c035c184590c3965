#include "clients/loadgen/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace loadgen {

using nlohmann::json;

std::string format_ns(double ns) {
    if (ns < 1e3) return fmt::format("{:.0f}ns", ns);
    if (ns < 1e6) return fmt::format("{:.2f}us", ns / 1e3);
    if (ns < 1e9) return fmt::format("{:.2f}ms", ns / 1e6);
    return fmt::format("{:.2f}s", ns / 1e9);
}

namespace {

std::string format_bytes(double b) {
    if (b < 1e3) return fmt::format("{:.0f}B", b);
    if (b < 1e6) return fmt::format("{:.2f}KB", b / 1e3);
    if (b < 1e9) return fmt::format("{:.2f}MB", b / 1e6);
    return fmt::format("{:.2f}GB", b / 1e9);
}

std::string latency_row(const char* label, const iolab::Histogram& h) {
    if (h.count() == 0) return fmt::format("  {:<12} (no samples)\n", label);
    auto f = [&](double p) { return format_ns(static_cast<double>(h.percentile(p))); };
    return fmt::format("  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", label,
                       format_ns(h.mean()), format_ns(h.stdev()), f(50), f(90), f(99), f(99.9),
                       f(99.99), format_ns(static_cast<double>(h.max())));
}

json stats_json(const iolab::Histogram& h) {
    auto us = [](double ns) { return std::round(ns) / 1e3; };
    json j = json::object();
    j["count"] = h.count();
    j["avg"] = us(h.mean());
    j["stdev"] = us(h.stdev());
    j["min"] = us(static_cast<double>(h.min()));
    j["p50"] = us(static_cast<double>(h.percentile(50)));
    j["p90"] = us(static_cast<double>(h.percentile(90)));
    j["p99"] = us(static_cast<double>(h.percentile(99)));
    j["p99_9"] = us(static_cast<double>(h.percentile(99.9)));
    j["p99_99"] = us(static_cast<double>(h.percentile(99.99)));
    j["max"] = us(static_cast<double>(h.max()));
    return j;
}

template <typename T>
T need(const json& j, const char* key) {
    if (!j.is_object() || !j.contains(key))
        throw std::runtime_error(std::string("report: missing key \"") + key + "\"");
    try {
        return j.at(key).get<T>();
    } catch (const json::exception& e) {
        throw std::runtime_error(std::string("report: key \"") + key + "\": " + e.what());
    }
}

// The adaptive wait's time with a spin budget, as a share of its time.
double wait_spin_share(const Results& r) {
    return r.wait_total_ns > 0
               ? static_cast<double>(r.wait_spin_ns) / static_cast<double>(r.wait_total_ns)
               : 0;
}

// Most of the adaptive wait's time without a run_delay figure (a kernel
// without CONFIG_SCHED_INFO has no /proc/thread-self/schedstat): the watch
// could not see a worker waiting for a CPU, only futile spins.
bool wait_blind(const Results& r) {
    return r.wait_blind_ns * 2 > r.wait_total_ns;
}

// What the wait did, for the Client: line.
std::string wait_text(const Options& o, const Results& r) {
    if (!o.busy_poll_auto) return fmt::format("busy-poll {:g}us", o.busy_poll_us);
    if (!o.spin_ruled_out.empty())
        return fmt::format("busy-poll auto: no spin, ruled out: {}", o.spin_ruled_out);
    return fmt::format(
        "busy-poll auto: {:g}us spin {:.0f}% of the time, {} changes, {} for CPU contention, {} "
        "tries again{}",
        o.busy_poll_us, 100 * wait_spin_share(r), r.wait_switches, r.wait_contended, r.wait_probes,
        wait_blind(r) ? "; CPU contention not watched: no /proc/thread-self/schedstat" : "");
}

}  // namespace

std::string summary_text(const Options& o, const Results& r) {
    std::string s;
    std::string targets;
    for (const auto& t : o.target_names)
        targets += (targets.empty() ? "" : " ") + t;
    s += fmt::format("loadgen {} {}: {} threads, {} connections", mode_name(o.mode), targets,
                     o.threads, o.connections);
    if (o.mode == Mode::idle) s += fmt::format(" ({} active)", o.active);
    if (o.rate > 0)
        s += fmt::format(", open loop at {:.0f} req/s", o.rate);
    else if (o.mode != Mode::idle || o.active > 0)
        s += ", closed loop";
    if (o.warmup_s > 0) s += fmt::format(", first {:.1f}s not counted", o.warmup_s);
    if (r.runs > 1) s += fmt::format(", {} runs merged", r.runs);
    s += "\n";
    s += fmt::format("  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "", "avg",
                     "stdev", "p50", "p90", "p99", "p99.9", "p99.99", "max");
    if (o.rate > 0) {
        s += latency_row("Latency", r.latency);
        s += latency_row("Uncorrected", r.uncorrected);
    } else {
        s += latency_row("Latency", r.latency);
    }
    s += latency_row("Connect", r.connect);
    s += fmt::format("  {} requests in {:.2f}s, {} read, {} written\n", r.requests, r.duration_s,
                     format_bytes(static_cast<double>(r.bytes_in)),
                     format_bytes(static_cast<double>(r.bytes_out)));
    s += fmt::format("  connections: {} established, {} failed, {} reopened, {} open at most",
                     r.connects, r.connect_failures, r.reconnects, r.max_open);
    if (r.all_up_s >= 0) s += fmt::format(", all up after {:.3f}s", r.all_up_s);
    s += "\n";
    if (!r.status.empty()) {
        s += "  status codes:";
        for (const auto& [code, n] : r.status)
            s += fmt::format(" {}={}", code, n);
        s += "\n";
    }
    const double secs = r.duration_s > 0 ? r.duration_s : 1;
    s += fmt::format("Requests/sec: {:.2f}\n", r.rps);
    s += fmt::format("Transfer/sec: {}/s in, {}/s out\n",
                     format_bytes(static_cast<double>(r.bytes_in) / secs),
                     format_bytes(static_cast<double>(r.bytes_out) / secs));
    {
        const double reqs = r.requests > 0 ? static_cast<double>(r.requests) : 1;
        const std::string wait = wait_text(o, r);
        s += fmt::format(
            "Client: {:.2f}us CPU/request, context switches/request {:.3f} voluntary {:.3f} "
            "involuntary ({})\n",
            static_cast<double>(r.client_cpu_ns) / 1e3 / reqs,
            static_cast<double>(r.client_vcsw) / reqs, static_cast<double>(r.client_ivcsw) / reqs,
            wait);
        if (r.server_pid > 0)
            s += fmt::format(
                "Server pid {}: {:.2f}us CPU/request, context switches/request {:.3f} voluntary "
                "{:.3f} involuntary\n",
                r.server_pid, r.server_cpu_s * 1e6 / reqs,
                static_cast<double>(r.server_vcsw) / reqs,
                static_cast<double>(r.server_ivcsw) / reqs);
    }
    if (r.errors.empty()) {
        s += "Errors: 0\n";
    } else {
        s += fmt::format("Errors: {}\n", r.error_total());
        for (const auto& [key, v] : r.errors)
            s += fmt::format("  {} {}: {} ({})\n", key.first, key.second, v.second, v.first);
    }
    return s;
}

json histogram_json(const iolab::Histogram& h) {
    json buckets = json::array();
    const auto& counts = h.counts();
    for (std::size_t i = 0; i < counts.size(); ++i)
        if (counts[i]) {
            json b = json::array();
            b.push_back(i);
            b.push_back(iolab::Histogram::bucket_low(i));
            b.push_back(counts[i]);
            buckets.push_back(b);
        }
    json j = json::object();
    j["unit"] = "ns";
    j["sub_bucket_bits"] = iolab::Histogram::kSubBits;
    j["count"] = h.count();
    j["min"] = h.min();
    j["max"] = h.max();
    j["sum"] = h.sum();
    j["buckets"] = buckets;
    return j;
}

std::string hgrm_text(const iolab::Histogram& h, double unit_ratio, int decimals) {
    std::string out = fmt::format("{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile",
                                  "TotalCount", "1/(1-Percentile)");
    const auto value = [&](double v) { return fmt::format("{:12.{}f}", v / unit_ratio, decimals); };
    const uint64_t total = h.count();
    if (total > 0) {
        const auto& counts = h.counts();
        std::size_t last = counts.size() - 1;
        while (last > 0 && counts[last] == 0)
            --last;
        // Walk the buckets once while the level climbs: 0, 10, ..., 50, 55,
        // ..., 75, 77.5, ... (5 steps per halving of what is left to 100), as
        // HdrHistogram's percentile iterator reports.
        std::size_t b = 0;
        uint64_t below = 0;  // counts in the buckets before b
        double level = 0;
        for (int row = 0; row < 2000; ++row) {
            const uint64_t rank = std::max<uint64_t>(
                1, static_cast<uint64_t>(std::ceil(level / 100.0 * static_cast<double>(total))));
            while (below + counts[b] < rank) {
                below += counts[b];
                ++b;
            }
            if (b >= last) break;
            const double v =
                std::clamp<double>(static_cast<double>(iolab::Histogram::bucket_mid(b)),
                                   static_cast<double>(h.min()), static_cast<double>(h.max()));
            const double frac = level / 100.0;
            out += fmt::format("{} {:2.12f} {:10d} {:14.2f}\n", value(v), frac, below + counts[b],
                               1.0 / (1.0 - frac));
            const double halvings = std::floor(std::log2(100.0 / (100.0 - level)));
            level += 100.0 / (5.0 * std::pow(2.0, halvings + 1));
            if (level >= 100.0) break;
        }
    }
    if (total > 0)
        out += fmt::format("{} {:2.12f} {:10d}\n", value(static_cast<double>(h.max())), 1.0, total);
    out += fmt::format("#[Mean    = {}, StdDeviation   = {}]\n", value(h.mean()), value(h.stdev()));
    out += fmt::format("#[Max     = {}, Total count    = {:12d}]\n",
                       value(static_cast<double>(h.max())), total);
    // The layout in HdrHistogram's terms: 256 exact sub-buckets, then one
    // bucket per octave up to 2^40.
    out += fmt::format("#[Buckets = {:12d}, SubBuckets     = {:12d}]\n",
                       iolab::Histogram::kMaxExponent - iolab::Histogram::kSubBits,
                       iolab::Histogram::kLinear);
    return out;
}

iolab::Histogram histogram_from_json(const json& j) {
    if (need<std::string>(j, "unit") != "ns" ||
        need<unsigned>(j, "sub_bucket_bits") != iolab::Histogram::kSubBits)
        throw std::runtime_error("report: histogram of another layout (unit/sub_bucket_bits)");
    iolab::Histogram h;
    for (const auto& b : need<json>(j, "buckets")) {
        if (!b.is_array() || b.size() != 3)
            throw std::runtime_error("report: bad histogram bucket");
        auto index = b[0].get<std::size_t>();
        if (index >= iolab::Histogram::kBuckets ||
            b[1].get<uint64_t>() != iolab::Histogram::bucket_low(index))
            throw std::runtime_error("report: histogram bucket " + std::to_string(index) +
                                     " does not match this layout");
        h.add_bucket(index, b[2].get<uint64_t>());
    }
    if (h.count() != need<uint64_t>(j, "count"))
        throw std::runtime_error("report: histogram count differs from its buckets");
    h.set_exact(need<uint64_t>(j, "min"), need<uint64_t>(j, "max"), need<uint64_t>(j, "sum"));
    return h;
}

json to_json(const Options& o, const Results& r) {
    json errors = json::array();
    for (const auto& [key, v] : r.errors) {
        json e = json::object();
        e["kind"] = key.first;
        e["code"] = key.second;
        e["text"] = v.first;
        e["count"] = v.second;
        errors.push_back(e);
    }
    json status = json::object();
    for (const auto& [code, n] : r.status)
        status[std::to_string(code)] = n;
    const double secs = r.duration_s > 0 ? r.duration_s : 1;
    json j = json::object();
    j["tool"] = "loadgen";
    j["format"] = 1;
    j["mode"] = mode_name(o.mode);
    j["targets"] = o.target_names;
    j["threads"] = o.threads;
    j["connections"] = o.connections;
    j["active"] = o.active;
    j["open_loop"] = o.rate > 0;
    j["rate"] = o.rate;
    j["duration_asked_s"] = o.duration_s;
    j["warmup_s"] = o.warmup_s;
    j["requests_asked"] = o.requests;
    j["size"] = (o.mode == Mode::echo || o.mode == Mode::idle) ? o.size : 0;
    j["runs"] = r.runs;
    j["duration_s"] = r.duration_s;
    j["requests"] = r.requests;
    j["requests_per_s"] = r.rps;
    j["bytes_in"] = r.bytes_in;
    j["bytes_out"] = r.bytes_out;
    j["mb_in_per_s"] = static_cast<double>(r.bytes_in) / secs / 1e6;
    j["mb_out_per_s"] = static_cast<double>(r.bytes_out) / secs / 1e6;
    j["connects"] = r.connects;
    j["connect_failures"] = r.connect_failures;
    j["reconnects"] = r.reconnects;
    j["max_open"] = r.max_open;
    if (r.all_up_s >= 0)
        j["all_up_s"] = r.all_up_s;
    else
        j["all_up_s"] = nullptr;
    j["latency_us"] = stats_json(r.latency);
    j["latency_uncorrected_us"] = stats_json(o.rate > 0 ? r.uncorrected : r.latency);
    j["connect_us"] = stats_json(r.connect);
    j["errors_total"] = r.error_total();
    j["errors"] = errors;
    const double reqs = r.requests > 0 ? static_cast<double>(r.requests) : 1;
    json client = json::object();
    client["busy_poll_us"] = o.busy_poll_us;
    client["wait"] = o.busy_poll_auto ? "auto" : "fixed";
    if (o.busy_poll_auto) {
        client["spin_share"] = wait_spin_share(r);
        client["wait_spin_s"] = static_cast<double>(r.wait_spin_ns) / 1e9;
        client["wait_s"] = static_cast<double>(r.wait_total_ns) / 1e9;
        client["wait_probes"] = r.wait_probes;
        client["wait_switches"] = r.wait_switches;
        client["wait_contended"] = r.wait_contended;
        client["wait_blind_s"] = static_cast<double>(r.wait_blind_ns) / 1e9;
        // Why the spin was ruled out before the run; null when it was not.
        client["spin_ruled_out"] =
            o.spin_ruled_out.empty() ? json(nullptr) : json(o.spin_ruled_out);
    } else {
        client["spin_share"] = o.busy_poll_us > 0 ? 1.0 : 0.0;
    }
    client["cpu_s"] = static_cast<double>(r.client_cpu_ns) / 1e9;
    client["voluntary_csw"] = r.client_vcsw;
    client["involuntary_csw"] = r.client_ivcsw;
    client["cpu_us_per_request"] = static_cast<double>(r.client_cpu_ns) / 1e3 / reqs;
    client["voluntary_csw_per_request"] = static_cast<double>(r.client_vcsw) / reqs;
    client["involuntary_csw_per_request"] = static_cast<double>(r.client_ivcsw) / reqs;
    j["client"] = client;
    if (r.server_pid > 0) {
        json server = json::object();
        server["pid"] = r.server_pid;
        server["cpu_s"] = r.server_cpu_s;
        server["voluntary_csw"] = r.server_vcsw;
        server["involuntary_csw"] = r.server_ivcsw;
        server["cpu_us_per_request"] = r.server_cpu_s * 1e6 / reqs;
        server["voluntary_csw_per_request"] = static_cast<double>(r.server_vcsw) / reqs;
        server["involuntary_csw_per_request"] = static_cast<double>(r.server_ivcsw) / reqs;
        j["server"] = server;
    } else {
        j["server"] = nullptr;
    }
    j["status_codes"] = status;
    json h = json::object();
    h["latency"] = histogram_json(r.latency);
    h["latency_uncorrected"] = histogram_json(r.uncorrected);
    h["connect"] = histogram_json(r.connect);
    j["histograms"] = h;
    return j;
}

void from_json(const json& j, Options& o, Results& r) {
    if (need<std::string>(j, "tool") != "loadgen" || need<int>(j, "format") != 1)
        throw std::runtime_error("report: not a loadgen report of format 1");
    try {
        o.mode = parse_mode(need<std::string>(j, "mode"));
    } catch (const std::invalid_argument&) {
        throw std::runtime_error("report: unknown mode " + need<std::string>(j, "mode"));
    }
    o.target_names = need<std::vector<std::string>>(j, "targets");
    o.threads = need<unsigned>(j, "threads");
    o.connections = need<uint64_t>(j, "connections");
    o.active = need<uint64_t>(j, "active");
    o.rate = need<double>(j, "rate");
    o.duration_s = need<double>(j, "duration_asked_s");
    o.warmup_s = j.value("warmup_s", 0.0);
    o.requests = need<uint64_t>(j, "requests_asked");
    o.size = need<std::size_t>(j, "size");
    r.runs = need<int>(j, "runs");
    r.duration_s = need<double>(j, "duration_s");
    r.requests = need<uint64_t>(j, "requests");
    r.rps = need<double>(j, "requests_per_s");
    r.bytes_in = need<uint64_t>(j, "bytes_in");
    r.bytes_out = need<uint64_t>(j, "bytes_out");
    r.connects = need<uint64_t>(j, "connects");
    r.connect_failures = need<uint64_t>(j, "connect_failures");
    r.reconnects = need<uint64_t>(j, "reconnects");
    r.max_open = need<uint64_t>(j, "max_open");
    const json& up = need<json>(j, "all_up_s");
    r.all_up_s = up.is_null() ? -1 : up.get<double>();
    for (const auto& e : need<json>(j, "errors")) {
        auto& slot = r.errors[{need<std::string>(e, "kind"), need<int>(e, "code")}];
        slot.first = need<std::string>(e, "text");
        slot.second += need<uint64_t>(e, "count");
    }
    const json codes = need<json>(j, "status_codes");
    for (const auto& [code, n] : codes.items())
        r.status[std::stoi(code)] += n.get<uint64_t>();
    if (j.contains("client") && j["client"].is_object()) {
        const json& c = j["client"];
        o.busy_poll_us = need<double>(c, "busy_poll_us");
        // Reports older than the adaptive wait had a fixed one.
        o.busy_poll_auto = c.value("wait", std::string("fixed")) == "auto";
        if (o.busy_poll_auto) {
            r.wait_spin_ns =
                static_cast<uint64_t>(std::llround(need<double>(c, "wait_spin_s") * 1e9));
            r.wait_total_ns = static_cast<uint64_t>(std::llround(need<double>(c, "wait_s") * 1e9));
            r.wait_probes = need<uint64_t>(c, "wait_probes");
            r.wait_switches = need<uint64_t>(c, "wait_switches");
            r.wait_contended = need<uint64_t>(c, "wait_contended");
            // Reports from before the blind watch was counted lack it.
            r.wait_blind_ns =
                static_cast<uint64_t>(std::llround(c.value("wait_blind_s", 0.0) * 1e9));
        }
        r.client_cpu_ns = static_cast<uint64_t>(std::llround(need<double>(c, "cpu_s") * 1e9));
        r.client_vcsw = need<uint64_t>(c, "voluntary_csw");
        r.client_ivcsw = need<uint64_t>(c, "involuntary_csw");
    }
    if (j.contains("server") && j["server"].is_object()) {
        const json& sv = j["server"];
        r.server_pid = need<int>(sv, "pid");
        r.server_cpu_s = need<double>(sv, "cpu_s");
        r.server_vcsw = need<uint64_t>(sv, "voluntary_csw");
        r.server_ivcsw = need<uint64_t>(sv, "involuntary_csw");
    }
    const json& h = need<json>(j, "histograms");
    r.latency = histogram_from_json(need<json>(h, "latency"));
    r.uncorrected = histogram_from_json(need<json>(h, "latency_uncorrected"));
    r.connect = histogram_from_json(need<json>(h, "connect"));
}

void merge_into(Options& info, Results& r, const Options& oi, const Results& o) {
    if (info.mode != oi.mode)
        throw std::runtime_error(std::string("merge: reports of different modes (") +
                                 mode_name(info.mode) + ", " + mode_name(oi.mode) + ")");
    for (const auto& t : oi.target_names)
        if (std::find(info.target_names.begin(), info.target_names.end(), t) ==
            info.target_names.end())
            info.target_names.push_back(t);
    info.threads += oi.threads;
    info.connections += oi.connections;
    info.active += oi.active;
    info.rate += oi.rate;
    info.duration_s = std::max(info.duration_s, oi.duration_s);
    info.warmup_s = std::max(info.warmup_s, oi.warmup_s);
    info.requests += oi.requests;
    r.runs += o.runs;
    r.add(o);
    r.rps += o.rps;
    r.duration_s = std::max(r.duration_s, o.duration_s);
    r.all_up_s = (r.all_up_s < 0 || o.all_up_s < 0) ? -1 : std::max(r.all_up_s, o.all_up_s);
    for (const auto& [key, v] : o.errors) {
        auto& slot = r.errors[key];
        slot.first = v.first;
        slot.second += v.second;
    }
    for (const auto& [code, n] : o.status)
        r.status[code] += n;
    // A server measured by several reports: the same process over the same
    // window counts once (runs merged are simultaneous); different ones add up.
    if (o.server_pid > 0) {
        if (r.server_pid == 0 || r.server_pid != o.server_pid) {
            r.server_cpu_s += o.server_cpu_s;
            r.server_vcsw += o.server_vcsw;
            r.server_ivcsw += o.server_ivcsw;
        } else {
            r.server_cpu_s = std::max(r.server_cpu_s, o.server_cpu_s);
            r.server_vcsw = std::max(r.server_vcsw, o.server_vcsw);
            r.server_ivcsw = std::max(r.server_ivcsw, o.server_ivcsw);
        }
        if (r.server_pid == 0) r.server_pid = o.server_pid;
    }
}

}  // namespace loadgen
