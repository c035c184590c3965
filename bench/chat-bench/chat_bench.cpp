// chat-bench — load for chat-server: many clients in one room, a few talking.
//
// Usage: chat-bench HOST:PORT [--clients 1000] [--talkers 5] [--rate 10]
//                   [--duration 10] [--drain 10] [--server-pid PID]
//
// Connects --clients clients (all land in the lobby), waits until every one
// has its welcome line, then has the first --talkers of them send --rate
// messages per second each for --duration seconds. Every message carries its
// send time (CLOCK_MONOTONIC, shared by processes on one machine); every
// receiver computes the delivery latency when the line arrives. After the
// talking, it waits up to --drain seconds for the deliveries still on their
// way, then prints one line:
//   clients=1000 talkers=5 sent=500 expected=499500 delivered=499500 lost=0
//   deliveries_per_s=49950 p50_ms=0.41 p99_ms=2.3 max_ms=7.9 [server_cpu_pct=.. server_rss_kb=..]
// With --server-pid, the server's CPU time over the talking phase (from
// /proc/PID/stat) and its resident memory (VmRSS, VmHWM) are reported too.
//
// One thread and epoll: the bench must not be slower than the server it
// measures. Bounded: every phase has a deadline; every client's unread input
// is bounded by a line limit. Latencies go into iolab::Histogram (fixed size,
// within 0.4 %), so memory does not grow with the number of deliveries.

#include <sys/epoll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/histogram.hpp"
#include "common/io.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxLine = 64 * 1024;

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

struct Client {
    Fd fd;
    std::string in;
    bool welcomed = false;
};

struct ProcSample {
    double cpu_seconds = 0;
    long rss_kb = 0, hwm_kb = 0;
};

ProcSample sample_process(int pid) {
    ProcSample s;
    if (pid <= 0) return s;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    auto close = text.rfind(')');  // the command name may hold spaces
    if (close != std::string::npos) {
        std::istringstream rest(text.substr(close + 2));
        std::string field;
        unsigned long utime = 0, stime = 0;
        // Fields after the name start at 3 (state); utime is 14, stime 15.
        for (int i = 3; i <= 15 && rest >> field; ++i) {
            if (i == 14) utime = std::stoul(field);
            if (i == 15) stime = std::stoul(field);
        }
        s.cpu_seconds = double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
    }
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("VmRSS:")) s.rss_kb = std::stol(line.substr(6));
        if (line.starts_with("VmHWM:")) s.hwm_kb = std::stol(line.substr(6));
    }
    return s;
}

class Bench {
  public:
    struct Options {
        std::string address;
        int clients = 1000;
        int talkers = 5;
        double rate = 10;
        double duration = 10;
        double drain = 10;
        int server_pid = 0;
    };

    explicit Bench(const Options& o) : o_(o), ep_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!ep_) throw_sys("epoll_create1");
    }

    int run() {
        raise_nofile_limit();
        const double connect_s = connect_all();
        const ProcSample before = sample_process(o_.server_pid);
        const auto start = Clock::now();
        const auto talked = talk(start);
        drain(talked);
        const auto end = Clock::now();
        const ProcSample after = sample_process(o_.server_pid);
        return report(connect_s, start, talked, end, before, after);
    }

  private:
    // Connects everyone, reading as it goes so that no buffer fills up, and
    // waits for every welcome. Returns how long that took, in seconds.
    double connect_all() {
        HostPort hp = parse_host_port(o_.address);
        auto addrs = resolve(hp.host, hp.port);
        const SockAddr& addr = addrs.front();
        auto t0 = Clock::now();
        clients_.resize(static_cast<std::size_t>(o_.clients));
        for (std::size_t i = 0; i < clients_.size(); ++i) {
            clients_[i].fd = connect_tcp(addr, std::chrono::seconds(10), /*nonblocking=*/true);
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = i;
            if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, clients_[i].fd.get(), &ev) != 0)
                throw_sys("epoll_ctl", "client " + std::to_string(i));
            if (i % 64 == 0) pump(0);
        }
        auto deadline = Clock::now() + std::chrono::seconds(60);
        while (welcomed_ < o_.clients) {
            if (Clock::now() > deadline)
                throw std::runtime_error("only " + std::to_string(welcomed_) + " of " +
                                         std::to_string(o_.clients) + " clients welcomed in 60 s");
            pump(100);
        }
        double connect_s = std::chrono::duration<double>(Clock::now() - t0).count();
        // Let the join notices settle before measuring.
        auto quiet = Clock::now() + std::chrono::milliseconds(500);
        while (Clock::now() < quiet)
            pump(50);
        return connect_s;
    }

    // The talkers send at --rate each, staggered across one interval, for
    // --duration seconds. Returns when they stopped.
    Clock::time_point talk(Clock::time_point start) {
        auto stop_talking = start + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(o_.duration));
        const auto interval = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(1.0 / o_.rate));
        std::vector<Clock::time_point> next(static_cast<std::size_t>(o_.talkers));
        for (std::size_t t = 0; t < next.size(); ++t)
            next[t] = start + interval * static_cast<long>(t) / static_cast<long>(next.size());
        std::vector<uint64_t> seq(next.size(), 0);
        while (Clock::now() < stop_talking) {
            auto now = Clock::now();
            auto soonest = stop_talking;
            for (std::size_t t = 0; t < next.size(); ++t) {
                while (next[t] <= now && next[t] < stop_talking) {
                    send_message(t, seq[t]++);
                    next[t] += interval;
                }
                soonest = std::min(soonest, next[t]);
            }
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(soonest - now);
            pump(static_cast<int>(std::max<int64_t>(0, wait.count())));
        }
        return Clock::now();
    }

    // Every message goes to every other member.
    [[nodiscard]] uint64_t expected() const {
        return sent_ * static_cast<uint64_t>(o_.clients - 1);
    }

    // Reads on for up to --drain seconds, until everything sent was delivered.
    void drain(Clock::time_point talked) {
        auto drain_until = talked + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(o_.drain));
        while (delivered_ < expected() && Clock::now() < drain_until)
            pump(50);
    }

    int report(double connect_s, Clock::time_point start, Clock::time_point talked,
               Clock::time_point end, const ProcSample& before, const ProcSample& after) {
        const uint64_t expected = this->expected();
        double span = std::chrono::duration<double>(end - start).count();
        double talk = std::chrono::duration<double>(talked - start).count();
        auto ms = [&](double p) { return double(latency_.percentile(p)) / 1e6; };
        const double p50 = ms(50), p99 = ms(99), p999 = ms(99.9), mx = ms(100);
        std::printf(
            "clients=%d talkers=%d rate=%g duration_s=%.1f connect_s=%.2f sent=%llu "
            "expected=%llu delivered=%llu lost=%llu deliveries_per_s=%.0f p50_ms=%.3f "
            "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f",
            o_.clients, o_.talkers, o_.rate, talk, connect_s,
            static_cast<unsigned long long>(sent_), static_cast<unsigned long long>(expected),
            static_cast<unsigned long long>(delivered_),
            static_cast<unsigned long long>(expected > delivered_ ? expected - delivered_ : 0),
            double(delivered_) / span, p50, p99, p999, mx);
        if (o_.server_pid > 0)
            std::printf(" server_cpu_pct=%.1f server_rss_kb=%ld server_hwm_kb=%ld",
                        100.0 * (after.cpu_seconds - before.cpu_seconds) / span, after.rss_kb,
                        after.hwm_kb);
        std::printf("\n");
        std::fflush(stdout);
        return delivered_ == expected ? 0 : 1;
    }

    void send_message(std::size_t talker, uint64_t n) {
        char line[96];
        int len =
            std::snprintf(line, sizeof line, "b %zu %llu %lld\n", talker,
                          static_cast<unsigned long long>(n), static_cast<long long>(now_ns()));
        IoResult w = write_some(clients_[talker].fd.get(),
                                std::span<const char>(line, static_cast<std::size_t>(len)));
        // A line this small into an idle socket cannot block; if it does, the
        // server is not reading at all and the bench says so.
        if (!w.ok()) throw std::runtime_error(w.describe("write", o_.address));
        ++sent_;
    }

    // One epoll_wait and a read on every ready client.
    void pump(int timeout_ms) {
        std::array<epoll_event, 512> evs;
        int n = ::epoll_wait(ep_.get(), evs.data(), int(evs.size()), timeout_ms);
        if (n < 0 && errno == EINTR) return;
        if (n < 0) throw_sys("epoll_wait");
        for (int i = 0; i < n; ++i)
            read_client(evs[std::size_t(i)].data.u64);
    }

    void read_client(std::size_t i) {
        Client& c = clients_[i];
        IoResult r = read_some(c.fd.get(), buf_);
        if (r.would_block()) return;
        if (!r.ok())
            throw std::runtime_error(
                r.describe("read", o_.address + " client " + std::to_string(i)));
        int64_t t = now_ns();
        c.in.append(buf_.data(), r.bytes);
        std::size_t start = 0;
        for (std::size_t nl; (nl = c.in.find('\n', start)) != std::string::npos; start = nl + 1)
            line(c, std::string_view(c.in).substr(start, nl - start), t);
        c.in.erase(0, start);
        if (c.in.size() > kMaxLine) throw std::runtime_error("line too long from the server");
    }

    void line(Client& c, std::string_view l, int64_t t) {
        if (!c.welcomed && l.starts_with("*** welcome")) {
            c.welcomed = true;
            ++welcomed_;
            return;
        }
        if (l.starts_with("error:")) throw std::runtime_error("server said: " + std::string(l));
        if (!l.starts_with("<")) return;
        auto p = l.find("> b ");
        if (p == std::string_view::npos) return;
        // "<nick> b TALKER SEQ SENT_NS": the send time is the last field.
        auto sp = l.rfind(' ');
        long long sent = std::strtoll(std::string(l.substr(sp + 1)).c_str(), nullptr, 10);
        ++delivered_;
        latency_.record(static_cast<uint64_t>(std::max<int64_t>(0, t - sent)));
    }

    Options o_;
    Fd ep_;
    std::vector<Client> clients_;
    std::array<char, 64 * 1024> buf_{};
    int welcomed_ = 0;
    uint64_t sent_ = 0, delivered_ = 0;
    Histogram latency_;  // delivery latencies, nanoseconds
};

}  // namespace

int main(int argc, char** argv) {
    Bench::Options o;
    CLI::App app{"Load for chat-server: N clients in one room, a few talking; latency and rate"};
    app.add_option("address", o.address, "chat-server as HOST:PORT")->required();
    app.add_option("--clients", o.clients, "Clients in the room")
        ->check(CLI::Range(2, 100000))
        ->capture_default_str();
    app.add_option("--talkers", o.talkers, "Clients that talk")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    app.add_option("--rate", o.rate, "Messages per second per talker")
        ->check(CLI::Range(0.1, 100000.0))
        ->capture_default_str();
    app.add_option("--duration", o.duration, "Seconds of talking")
        ->check(CLI::Range(0.1, 600.0))
        ->capture_default_str();
    app.add_option("--drain", o.drain, "Seconds to wait for deliveries after the talking")
        ->check(CLI::Range(0.0, 600.0))
        ->capture_default_str();
    app.add_option("--server-pid", o.server_pid, "Report this process's CPU and RSS");
    iolab::setup_program(app, "chat-bench",
                         "Exit codes:\n"
                         "  0  the run finished and every message arrived\n"
                         "  1  runtime error or messages lost\n"
                         "  2  usage error");
    IOLAB_PARSE(app, argc, argv);
    if (o.talkers > o.clients)
        return iolab::usage_error(app, "--talkers must not exceed --clients");
    return iolab::guarded_main("chat-bench", [&] {
        Bench bench(o);
        return bench.run();
    });
}
