#include "clients/loadgen/options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/http.hpp"
#include "common/server.hpp"

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

Plan make_plan(const Options& o) {
    Plan p;
    if (o.mode == "echo")
        p.mode = Mode::echo;
    else if (o.mode == "http")
        p.mode = Mode::http;
    else if (o.mode == "raw")
        p.mode = Mode::raw;
    else if (o.mode == "idle")
        p.mode = Mode::idle;
    else
        throw std::invalid_argument("--mode must be echo, http, raw or idle");

    if (p.mode == Mode::http) {
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
            auto it = std::find_if(p.targets.begin(), p.targets.end(),
                                   [&](const Target& t) { return t.name == name; });
            if (it == p.targets.end()) {
                p.targets.push_back(Target{addrs.front(), name, {}});
                it = p.targets.end() - 1;
            }
            it->requests.push_back("GET " + u.target + " HTTP/1.1\r\nHost: " + u.authority() +
                                   "\r\n\r\n");
        }
    } else {
        if (o.target.empty()) throw std::invalid_argument("a target HOST:PORT is needed");
        if (!o.urls.empty()) throw std::invalid_argument("--url belongs to --mode http");
        iolab::HostPort hp = iolab::parse_host_port(o.target);
        if (hp.port == 0) throw std::invalid_argument("the target needs a port: " + o.target);
        auto addrs = iolab::resolve(hp.host, hp.port);
        p.targets.push_back(Target{addrs.front(), addrs.front().to_string(), {}});
    }

    if (p.mode == Mode::raw) {
        if (o.send.empty()) throw std::invalid_argument("--mode raw needs --send STRING");
        p.targets[0].requests.push_back(unescape(o.send));
        if (o.expect_line == (o.expect_bytes > 0))
            throw std::invalid_argument(
                "--mode raw needs one of --expect-bytes N or --expect-line");
        p.expect_bytes = o.expect_bytes;
        p.expect_line = o.expect_line;
    } else if (!o.send.empty() || o.expect_bytes || o.expect_line) {
        throw std::invalid_argument("--send / --expect-* belong to --mode raw");
    }
    if (o.verify && p.mode != Mode::echo && p.mode != Mode::idle)
        throw std::invalid_argument("--verify belongs to the echo workload");

    if (o.connections == 0 || o.connections > 1'000'000)
        throw std::invalid_argument("--connections must be 1..1000000");
    p.connections = o.connections;
    if (p.mode == Mode::idle) {
        if (o.active > o.connections)
            throw std::invalid_argument("--active cannot exceed --connections");
        p.active = o.active;
    } else if (o.active) {
        throw std::invalid_argument("--active belongs to --mode idle");
    }
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    p.threads = o.threads ? o.threads : cores;
    if (p.threads > 1024) throw std::invalid_argument("--threads must be 1..1024");
    p.threads = static_cast<unsigned>(std::min<uint64_t>(p.threads, p.connections));

    if (o.duration_s < 0 || o.duration_s > 86400 * 7)
        throw std::invalid_argument("--duration must be 0..604800 s");
    p.duration_s = o.duration_s;
    p.requests = o.requests;
    if (p.requests && p.mode == Mode::idle && p.active == 0)
        throw std::invalid_argument("--requests needs --active in idle mode");
    if (p.duration_s == 0 && p.requests == 0) p.duration_s = 10;
    if (o.rate < 0) throw std::invalid_argument("--rate must be positive");
    p.rate = o.rate;
    if (p.rate > 0 && p.mode == Mode::idle && p.active == 0)
        throw std::invalid_argument("--rate needs --active in idle mode");
    if (o.ramp_s < 0 || o.ramp_s > 3600) throw std::invalid_argument("--ramp must be 0..3600 s");
    p.ramp_s = o.ramp_s;
    if (o.warmup_s < 0 || (p.duration_s > 0 && o.warmup_s >= p.duration_s))
        throw std::invalid_argument("--warmup must be shorter than --duration");
    if (o.warmup_s > 0 && p.requests > 0)
        throw std::invalid_argument("--warmup goes with --duration, not --requests");
    p.warmup_s = o.warmup_s;
    if (o.timeout_s <= 0 || o.timeout_s > 3600)
        throw std::invalid_argument("--timeout must be in (0, 3600] s");
    p.timeout_ns = static_cast<uint64_t>(o.timeout_s * 1e9);
    if (o.size == 0 || o.size > (std::size_t{64} << 20))
        throw std::invalid_argument("--size must be 1 B..64 MiB");
    p.size = o.size;
    p.verify = o.verify;
    if (!o.source_addrs.empty()) {
        p.sources = parse_source_addrs(o.source_addrs);
        for (const auto& s : p.sources)
            for (const auto& t : p.targets)
                if (s.family() != t.addr.family())
                    throw std::invalid_argument("source " + s.host() +
                                                " is not of the target's address family");
    }
    if (p.targets.size() > 65535) throw std::invalid_argument("too many targets");
    return p;
}

Preflight preflight(const Plan& plan) {
    Preflight pf;
    pf.nofile = iolab::raise_nofile_limit();
    // The sockets, an epoll and nothing else per worker, the stop eventfd,
    // stdio and a few for the JSON file and the libraries.
    pf.nofile_needed = plan.connections + plan.threads + 16;
    unsigned lo = 32768, hi = 60999;
    std::sscanf(read_proc("/proc/sys/net/ipv4/ip_local_port_range").c_str(), "%u %u", &lo, &hi);
    pf.ports = hi >= lo ? hi - lo + 1 : 0;
    pf.sources = std::max<std::size_t>(1, plan.sources.size());
    const uint64_t per_target = (plan.connections + plan.targets.size() - 1) / plan.targets.size();
    pf.ports_needed = (per_target + pf.sources - 1) / pf.sources;
    pf.somaxconn = std::strtoull(read_proc("/proc/sys/net/core/somaxconn").c_str(), nullptr, 10);
    pf.burst = plan.ramp_s > 0 ? 0 : plan.connections;

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
