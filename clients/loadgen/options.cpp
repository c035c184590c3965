#include "clients/loadgen/options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/fd.hpp"
#include "common/http.hpp"
#include "common/program.hpp"

namespace loadgen {

std::string unescape(std::string_view t) {
    std::string out;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i] != '\\') {
            out += t[i];
            continue;
        }
        if (++i == t.size()) throw std::invalid_argument("escape cut short at the end");
        switch (t[i]) {
            case 'r':
                out += '\r';
                break;
            case 'n':
                out += '\n';
                break;
            case 't':
                out += '\t';
                break;
            case '0':
                out += '\0';
                break;
            case '\\':
                out += '\\';
                break;
            case 'x': {
                auto hex = [&](std::size_t k) -> int {
                    if (k >= t.size()) return -1;
                    char c = t[k];
                    if (c >= '0' && c <= '9') return c - '0';
                    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                    return -1;
                };
                int hi = hex(i + 1), lo = hex(i + 2);
                if (hi < 0 || lo < 0) throw std::invalid_argument("\\x needs two hex digits");
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                break;
            }
            default:
                throw std::invalid_argument(std::string("unknown escape \\") + t[i]);
        }
    }
    return out;
}

namespace {

uint32_t ipv4(std::string_view s) {
    in_addr a{};
    std::string str(s);
    if (::inet_pton(AF_INET, str.c_str(), &a) != 1)
        throw std::invalid_argument("not an IPv4 address: " + str);
    return ntohl(a.s_addr);
}

iolab::SockAddr from_ipv4(uint32_t v) {
    in_addr a{};
    a.s_addr = htonl(v);
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &a, buf, sizeof buf);
    return iolab::SockAddr::from_numeric(buf, 0);
}

std::string read_proc(const char* path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s);
    return s;
}

}  // namespace

std::vector<iolab::SockAddr> parse_source_addrs(std::string_view text) {
    std::vector<iolab::SockAddr> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t comma = text.find(',', pos);
        std::string_view item =
            text.substr(pos, comma == std::string_view::npos ? text.npos : comma - pos);
        if (item.empty()) throw std::invalid_argument("empty item in source address list");
        std::size_t dash = item.find('-');
        if (dash != std::string_view::npos) {
            uint32_t a = ipv4(item.substr(0, dash)), b = ipv4(item.substr(dash + 1));
            if (b < a)
                throw std::invalid_argument("source range runs backwards: " + std::string(item));
            if (b - a >= 65536) throw std::invalid_argument("source range over 65536 addresses");
            for (uint64_t v = a; v <= b; ++v)
                out.push_back(from_ipv4(static_cast<uint32_t>(v)));
        } else {
            try {
                out.push_back(iolab::SockAddr::from_numeric(item, 0));
            } catch (const std::exception&) {
                throw std::invalid_argument("not an IP address: " + std::string(item));
            }
        }
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return out;
}

const char* mode_name(Mode m) noexcept {
    switch (m) {
        case Mode::echo:
            return "echo";
        case Mode::http:
            return "http";
        case Mode::raw:
            return "raw";
        case Mode::idle:
            return "idle";
    }
    return "?";
}

Mode parse_mode(std::string_view name) {
    for (Mode m : {Mode::echo, Mode::http, Mode::raw, Mode::idle})
        if (name == mode_name(m)) return m;
    throw std::invalid_argument("--mode must be echo, http, raw or idle");
}

double parse_instant(std::string_view text) {
    const std::string s(text);
    const auto bad = [&] {
        return std::invalid_argument("--start-at: not Unix seconds or ISO-8601 UTC: " + s);
    };
    if (s.empty()) throw bad();
    if (s.find('T') == std::string::npos) {
        // Unix seconds, with or without a fraction.
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(s.c_str(), &end);
        // "inf" and "1e999" read as doubles: an instant that never comes.
        if (errno != 0 || end != s.c_str() + s.size() || !(v > 0) || !std::isfinite(v)) throw bad();
        return v;
    }
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)
    std::tm tm{};
    const char* rest = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == nullptr) throw bad();
    double frac = 0;
    if (*rest == '.') {
        double scale = 0.1;
        ++rest;
        if (!std::isdigit(static_cast<unsigned char>(*rest))) throw bad();
        while (std::isdigit(static_cast<unsigned char>(*rest))) {
            frac += (*rest - '0') * scale;
            scale /= 10;
            ++rest;
        }
    }
    if (std::string_view(rest) != "Z" && std::string_view(rest) != "+00:00") throw bad();
    const time_t secs = ::timegm(&tm);
    if (secs <= 0) throw bad();
    return static_cast<double>(secs) + frac;
}

namespace {

// --url / HOST:PORT into Options::targets and target_names.
void resolve_targets(Options& o) {
    o.targets.clear();
    o.target_names.clear();
    if (o.mode == Mode::http) {
        if (o.urls.empty()) throw std::invalid_argument("--mode http needs --url");
        if (!o.target.empty())
            throw std::invalid_argument("--mode http takes --url, not a HOST:PORT");
        for (const auto& text : o.urls) {
            iolab::http::Url u;
            try {
                u = iolab::http::parse_url(text);
            } catch (const std::exception& e) {
                throw std::invalid_argument(std::string("--url: ") + e.what());
            }
            if (u.scheme != "http")
                throw std::invalid_argument("--url: only http:// (no TLS): " + text);
            auto addrs = iolab::resolve(u.host, u.port);
            std::string name = addrs.front().to_string();
            auto it = std::find_if(o.targets.begin(), o.targets.end(),
                                   [&](const Target& t) { return t.name == name; });
            if (it == o.targets.end()) {
                o.targets.push_back(Target{addrs.front(), name, {}});
                it = o.targets.end() - 1;
            }
            it->requests.push_back("GET " + u.target + " HTTP/1.1\r\nHost: " + u.authority() +
                                   "\r\n\r\n");
        }
        o.target_names = o.urls;
    } else {
        if (o.target.empty()) throw std::invalid_argument("a target HOST:PORT is needed");
        if (!o.urls.empty()) throw std::invalid_argument("--url belongs to --mode http");
        iolab::HostPort hp = iolab::parse_host_port(o.target);
        if (hp.port == 0) throw std::invalid_argument("the target needs a port: " + o.target);
        auto addrs = iolab::resolve(hp.host, hp.port);
        o.targets.push_back(Target{addrs.front(), addrs.front().to_string(), {}});
        o.target_names = {o.targets[0].name};
    }
    if (o.targets.size() > 65535) throw std::invalid_argument("too many targets");
}

}  // namespace

// One check after the other, in the order of --help; every message names the
// option. Long, but flat: splitting it would only scatter the rules.
void resolve(Options& o) {
    resolve_targets(o);
    if (o.mode == Mode::raw) {
        if (o.send.empty()) throw std::invalid_argument("--mode raw needs --send STRING");
        o.targets[0].requests.push_back(unescape(o.send));
        if (o.expect_line == (o.expect_bytes > 0))
            throw std::invalid_argument(
                "--mode raw needs one of --expect-bytes N or --expect-line");
    } else if (!o.send.empty() || o.expect_bytes || o.expect_line) {
        throw std::invalid_argument("--send / --expect-* belong to --mode raw");
    }
    if (o.verify && o.mode != Mode::echo && o.mode != Mode::idle)
        throw std::invalid_argument("--verify belongs to the echo workload");

    if (o.connections == 0 || o.connections > 1'000'000)
        throw std::invalid_argument("--connections must be 1..1000000");
    if (o.mode != Mode::idle && o.active)
        throw std::invalid_argument("--active belongs to --mode idle");
    if (o.active > o.connections)
        throw std::invalid_argument("--active cannot exceed --connections");
    if (o.threads > 1024) throw std::invalid_argument("--threads must be 1..1024");
    if (o.threads == 0) {
        // One worker per CPU this process may run on: under `taskset -c 1`
        // that is one, not the machine's count (two workers on one CPU would
        // only take turns, and a spinning one would hold up the other).
        cpu_set_t set;
        CPU_ZERO(&set);
        const int allowed = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
        o.threads = allowed > 0 ? static_cast<unsigned>(allowed)
                                : std::max(1u, std::thread::hardware_concurrency());
    }
    o.threads = static_cast<unsigned>(std::min<uint64_t>(o.threads, o.connections));

    if (o.duration_s < 0 || o.duration_s > 86400 * 7)
        throw std::invalid_argument("--duration must be 0..604800 s");
    if (o.requests && o.mode == Mode::idle && o.active == 0)
        throw std::invalid_argument("--requests needs --active in idle mode");
    if (o.duration_s == 0 && o.requests == 0) o.duration_s = 10;
    if (o.rate < 0) throw std::invalid_argument("--rate must be positive");
    if (o.rate > 0 && o.mode == Mode::idle && o.active == 0)
        throw std::invalid_argument("--rate needs --active in idle mode");
    if (o.ramp_s < 0 || o.ramp_s > 3600) throw std::invalid_argument("--ramp must be 0..3600 s");
    if (o.warmup_s < 0 || (o.duration_s > 0 && o.warmup_s >= o.duration_s))
        throw std::invalid_argument("--warmup must be shorter than --duration");
    if (o.warmup_s > 0 && o.requests > 0)
        throw std::invalid_argument("--warmup goes with --duration, not --requests");
    if (o.timeout_s <= 0 || o.timeout_s > 3600)
        throw std::invalid_argument("--timeout must be in (0, 3600] s");
    o.timeout_ns = static_cast<uint64_t>(o.timeout_s * 1e9);
    if (o.size == 0 || o.size > (std::size_t{64} << 20))
        throw std::invalid_argument("--size must be 1 B..64 MiB");
    o.sources.clear();
    if (!o.source_addrs.empty()) {
        o.sources = parse_source_addrs(o.source_addrs);
        for (const auto& s : o.sources)
            for (const auto& t : o.targets)
                if (s.family() != t.addr.family())
                    throw std::invalid_argument("source " + s.host() +
                                                " is not of the target's address family");
    }
    if (o.busy_poll == "auto") {
        o.busy_poll_auto = true;
        o.busy_poll_us = kDefaultBusyPollUs;
    } else {
        const char* b = o.busy_poll.c_str();
        char* e = nullptr;
        errno = 0;
        const double us = std::strtod(b, &e);
        if (o.busy_poll.empty() || e != b + o.busy_poll.size() || errno != 0 ||
            !(us >= 0 && us <= 100'000))
            throw std::invalid_argument("--busy-poll must be auto or 0..100000 us, not '" +
                                        o.busy_poll + "'");
        o.busy_poll_auto = false;
        o.busy_poll_us = us;
    }
    o.spin_ruled_out.clear();
    if (o.busy_poll_auto) {
        // A spinning worker keeps its CPU. When the server is on this
        // machine and the workers can occupy every CPU, the server's time
        // is what the spin takes: measured on 2 CPUs, echo-epoll and 2
        // workers, spin ran at 0.6-0.82x of sleep. The run-time watch
        // (wait_policy.hpp) would see it too, but only after spinning for a
        // window; here it costs nothing.
        const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        const uint64_t workers = uint64_t{o.threads} * o.processes;
        const bool local = std::all_of(o.targets.begin(), o.targets.end(),
                                       [](const Target& t) { return is_local_address(t.addr); });
        if (local && cpus > 0 && workers >= static_cast<uint64_t>(cpus))
            o.spin_ruled_out =
                fmt::format("{} worker{} on {} CPU{}, the server on this machine", workers,
                            workers == 1 ? "" : "s", cpus, cpus == 1 ? "" : "s");
    }
    if (o.server_pid < 0) throw std::invalid_argument("--server-pid must be a process id");
    if (o.server_pid > 0 && !std::filesystem::exists("/proc/" + std::to_string(o.server_pid)))
        throw std::invalid_argument("--server-pid " + std::to_string(o.server_pid) +
                                    ": no such process");
    o.start_at_unix = o.start_at.empty() ? 0 : parse_instant(o.start_at);
    if (o.processes == 0 || o.processes > 64)
        throw std::invalid_argument("--processes must be 1..64");
    if (o.processes > o.connections)
        throw std::invalid_argument("--processes cannot exceed --connections");
}

bool is_local_address(const iolab::SockAddr& a) {
    if (a.family() == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(a.get());
        if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) return true;
    } else if (a.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.get());
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    } else {
        return false;
    }
    // An address of one of this machine's interfaces is one it can bind to.
    iolab::SockAddr probe = a;
    probe.set_port(0);
    const iolab::Fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    return fd && ::bind(fd.get(), probe.get(), probe.len) == 0;
}

Preflight preflight(const Options& o) {
    Preflight pf;
    pf.nofile = iolab::raise_nofile_limit();
    // The sockets, an epoll and nothing else per worker, the stop eventfd,
    // stdio and a few for the JSON file and the libraries.
    pf.nofile_needed = o.connections + o.threads + 16;
    unsigned lo = 32768, hi = 60999;
    std::sscanf(read_proc("/proc/sys/net/ipv4/ip_local_port_range").c_str(), "%u %u", &lo, &hi);
    pf.ports = hi >= lo ? hi - lo + 1 : 0;
    pf.sources = std::max<std::size_t>(1, o.sources.size());
    const uint64_t per_target = (o.connections + o.targets.size() - 1) / o.targets.size();
    pf.ports_needed = (per_target + pf.sources - 1) / pf.sources;
    pf.somaxconn = std::strtoull(read_proc("/proc/sys/net/core/somaxconn").c_str(), nullptr, 10);
    pf.burst = o.ramp_s > 0 ? 0 : o.connections;

    std::string limit;
    if (pf.nofile < pf.nofile_needed) {
        limit = fmt::format(
            "RLIMIT_NOFILE {} < {} descriptors needed (raise the hard limit: "
            "ulimit -Hn, /etc/security/limits.conf)",
            pf.nofile, pf.nofile_needed);
        pf.fatal = true;
    } else if (pf.ports < pf.ports_needed) {
        limit = fmt::format(
            "{} ephemeral ports per source address < {} connections per source "
            "and target (use --source-addrs 127.0.0.2-127.0.0.N or widen "
            "net.ipv4.ip_local_port_range)",
            pf.ports, pf.ports_needed);
        pf.fatal = true;
    } else if (pf.ports_needed > pf.ports / 2) {
        // Linux's connect() tries the ports of one parity first (bind() gets
        // the other half); past that half, every connect() scans it all before
        // finding a free port, and setting up connections slows to a crawl.
        limit = fmt::format(
            "{} connections per source address > half the ephemeral range ({}): "
            "connect() scans the first half before each pick and slows down "
            "(--source-addrs 127.0.0.1-127.0.0.{} avoids it)",
            pf.ports_needed, pf.ports / 2,
            1 + (pf.ports_needed * pf.sources) / (pf.ports / 2 * 9 / 10));
    } else if (pf.burst > pf.somaxconn && pf.somaxconn > 0) {
        limit = fmt::format(
            "{} connects at once > somaxconn {}: a server that accepts slowly "
            "overflows its backlog and SYNs are retried after 1 s (--ramp spreads them)",
            pf.burst, pf.somaxconn);
    } else {
        limit = "nothing expected (the server or the CPU will be)";
    }
    pf.line = fmt::format(
        "preflight: nofile {} (need {}), ports {} per source x {} source{} (need {}), somaxconn "
        "{}; limit: {}",
        pf.nofile, pf.nofile_needed, pf.ports, pf.sources, pf.sources == 1 ? "" : "s",
        pf.ports_needed, pf.somaxconn, limit);
    return pf;
}

}  // namespace loadgen
