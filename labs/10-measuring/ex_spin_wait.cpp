// ex-spin-wait — write it yourself: spin, then block. An echo server on epoll
// whose wait first looks for events without sleeping, for up to --spin-us
// microseconds, and only then sleeps in epoll_wait.
//
// Usage: ex-spin-wait [--spin-us US] [--port P] ...   the server (echo-epoll's options)
//        ex-spin-wait --check [--spin-us US] [--requests N]
//
// A request that arrives while the server sleeps costs a wake-up: the
// sender's kernel finds the sleeper on the epoll wait queue, puts it on a run
// queue, maybe interrupts another CPU, and the server pays a context switch
// back in. A request that arrives while the server is still spinning on its
// CPU (epoll_wait with a zero timeout, again and again) wakes nobody. The
// price is CPU burnt while nothing comes, so the spin needs a bound: after
// --spin-us without an event, block as before.
//
// Your part is spin_then_block() below (the TODO). Everything else is
// echo-epoll: the driver of lab 03 (accept, read, echo, bounded queues,
// SIGTERM, the summary) over an epoll backend whose wait() calls yours. Two
// given calls count what your code does: poll_now() (epoll_wait, timeout 0)
// and block() (epoll_wait with the driver's timeout). At the end the server
// prints, before its summary line:
//   spin: waits=N polls=N hits=N blocks=N spin_p50_us=N
// (hits: polls that found events; spin_p50_us: the median time a wait spent
// before it blocked).
//
// --check runs the check: it starts this program as a server (--port 0 and
// the given --spin-us, then again with --spin-us 0 for comparison), sends
// --requests echoes of 64 bytes one after the other on one connection and
// checks every byte, leaves the server idle for 500 ms and reads its CPU
// time, stops it with SIGTERM and reads its counters. It prints figures and,
// last, `check: PASS — ...` or `check: FAIL — what is wrong`.
// Exit codes: 0 (server: stopped; --check: PASS), 3 --check: FAIL, 1
// internal error, 2 usage.
//
// Linux notes: epoll_wait with a timeout of 0 never sleeps: it checks the
// ready list and returns. A CPU-time figure from /proc/PID/stat counts in
// ticks of 10 ms.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/echo_server.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using iolab::Ready;

class SpinEpoll {
  public:
    explicit SpinEpoll(int spin_us) : spin_us_(spin_us), ep_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!ep_) iolab::throw_sys("epoll_create1", "ex-spin-wait");
    }
    SpinEpoll(SpinEpoll&&) = default;
    ~SpinEpoll() {
        if (!ep_) return;  // moved from
        std::vector<uint32_t> s = spun_us_;
        uint32_t p50 = 0;
        if (!s.empty()) {
            std::nth_element(s.begin(), s.begin() + static_cast<long>(s.size() / 2), s.end());
            p50 = s[s.size() / 2];
        }
        std::printf("spin: waits=%llu polls=%llu hits=%llu blocks=%llu spin_p50_us=%u\n",
                    static_cast<unsigned long long>(waits_),
                    static_cast<unsigned long long>(polls_), static_cast<unsigned long long>(hits_),
                    static_cast<unsigned long long>(blocks_), p50);
        std::fflush(stdout);
    }

    std::string watch(int fd, bool read, bool write) {
        const auto f = static_cast<std::size_t>(fd);
        if (f >= mask_.size()) mask_.resize(f + 1, kNone);
        const uint32_t want = (read ? EPOLLIN : 0u) | (write ? EPOLLOUT : 0u);
        if (mask_[f] == want) return {};
        epoll_event ev{.events = want, .data = {.fd = fd}};
        if (::epoll_ctl(ep_.get(), mask_[f] == kNone ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0)
            return "epoll_ctl: " + iolab::errno_text(errno);
        mask_[f] = want;
        return {};
    }

    void forget(int fd) {
        ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);
        mask_[static_cast<std::size_t>(fd)] = kNone;
    }

    template <class Fired>
    void wait(int timeout_ms, Fired&& fired) {
        ++waits_;
        entered_ = Clock::now();
        const int n = spin_then_block(timeout_ms);
        for (int i = 0; i < n; ++i) {
            const uint32_t ev = events_[i].events;
            fired(events_[i].data.fd, Ready{.read = (ev & EPOLLIN) != 0,
                                            .write = (ev & EPOLLOUT) != 0,
                                            .error = (ev & EPOLLERR) != 0,
                                            .hangup = (ev & EPOLLHUP) != 0});
        }
    }

  private:
    // ---- given: the two ways to ask epoll, counted ----------------------------

    // Looks for ready descriptors without sleeping (timeout 0). Returns how
    // many it put in events_ (0: none yet; -1: EINTR).
    [[maybe_unused]] int poll_now() {  // (for your code)
        ++polls_;
        const int n = ::epoll_wait(ep_.get(), events_, kMaxEvents, 0);
        if (n < 0 && errno != EINTR) iolab::throw_sys("epoll_wait", "ex-spin-wait");
        if (n > 0) ++hits_;
        return n;
    }

    // Sleeps in epoll_wait until something is ready or timeout_ms passes (-1:
    // no limit). Returns how many it put in events_ (0: timeout; -1: EINTR).
    int block(int timeout_ms) {
        ++blocks_;
        if (spun_us_.size() < kMaxSamples)
            spun_us_.push_back(static_cast<uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - entered_)
                    .count()));
        const int n = ::epoll_wait(ep_.get(), events_, kMaxEvents, timeout_ms);
        if (n < 0 && errno != EINTR) iolab::throw_sys("epoll_wait", "ex-spin-wait");
        return n;
    }

    // ---- yours --------------------------------------------------------------------

    // Fills events_ with what is ready and returns how many (-1 on EINTR),
    // waiting at most timeout_ms (-1: no limit).
    int spin_then_block(int timeout_ms) {
        // TODO(you): spin, then block (LAB.md § Write it yourself: spin, then
        // block). Call poll_now() again and again while less than spin_us_
        // microseconds have passed since you started (and, when timeout_ms
        // >= 0, less than timeout_ms): return as soon as it finds events (or
        // says -1). Only when the spin is over without any, block(timeout_ms).
        // --spin-us 0 means no spin at all.
        return block(timeout_ms);
    }

    static constexpr uint32_t kNone = UINT32_MAX;
    static constexpr int kMaxEvents = 1024;
    static constexpr std::size_t kMaxSamples = 1'000'000;
    [[maybe_unused]] const int spin_us_;  // --spin-us
    iolab::Fd ep_;
    std::vector<uint32_t> mask_;
    epoll_event events_[kMaxEvents];
    Clock::time_point entered_;
    unsigned long long waits_ = 0, polls_ = 0, hits_ = 0, blocks_ = 0;
    std::vector<uint32_t> spun_us_;  // per blocking wait: µs spent before block()
};

// ---- the check ----------------------------------------------------------------------

struct Child {
    pid_t pid = -1;
    iolab::Fd out;  // its stdout
};

Child spawn_server(int spin_us) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) iolab::throw_sys("pipe2");
    const std::string spin = std::to_string(spin_us);
    const pid_t pid = ::fork();
    if (pid < 0) iolab::throw_sys("fork");
    if (pid == 0) {
        ::dup2(p[1], 1);
        ::execl("/proc/self/exe", "ex-spin-wait", "--port", "0", "--spin-us", spin.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(p[1]);
    return Child{pid, iolab::Fd(p[0])};
}

// Reads the child's stdout until `want` appears or `ms` pass.
std::string read_until(int fd, std::string_view want, int ms) {
    std::string s;
    const auto end = Clock::now() + std::chrono::milliseconds(ms);
    while (s.find(want) == std::string::npos && Clock::now() < end) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        char buf[4096];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        s.append(buf, static_cast<std::size_t>(n));
    }
    return s;
}

long cpu_ms(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), {});
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stol(field);
        if (i == 15) stime = std::stol(field);
    }
    return (utime + stime) * 1000 / ::sysconf(_SC_CLK_TCK);
}

unsigned long long counter(const std::string& out, const std::string& key) {
    const auto at = out.find(" " + key + "=");
    if (at == std::string::npos) return 0;
    return std::stoull(out.substr(at + key.size() + 2));
}

struct Run {
    std::string problem;  // "" when it went right
    std::size_t echoed = 0;
    long rtt_p50_us = 0;
    long idle_cpu_ms = 0;
    unsigned long long polls = 0, hits = 0, blocks = 0, spin_p50_us = 0;
};

Run run_one(int spin_us, std::size_t requests) {
    Run r;
    Child c = spawn_server(spin_us);
    auto finish = [&](std::string why) {
        r.problem = std::move(why);
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, nullptr, 0);
        return r;
    };
    const std::string first = read_until(c.out.get(), "\n", 5000);
    const auto colon = first.rfind(':');
    if (first.rfind("listening on ", 0) != 0 || colon == std::string::npos)
        return finish("the server did not print 'listening on HOST:PORT' within 5 s");
    const auto port = static_cast<uint16_t>(std::stoi(first.substr(colon + 1)));

    iolab::Fd fd = iolab::connect_tcp("127.0.0.1", port, std::chrono::seconds(5));
    iolab::set_nodelay(fd.get());
    std::vector<long> rtts;
    rtts.reserve(requests);
    std::string msg(64, ' '), got(64, ' ');
    for (std::size_t k = 0; k < requests; ++k) {
        for (std::size_t i = 0; i < msg.size(); ++i)
            msg[i] = static_cast<char>('a' + (k + i) % 26);
        const auto t0 = Clock::now();
        if (!iolab::write_all(fd.get(), {msg.data(), msg.size()}).ok())
            return finish("send to the server failed: " + iolab::errno_text(errno));
        std::size_t have = 0;
        while (have < got.size()) {
            pollfd p{fd.get(), POLLIN, 0};
            if (::poll(&p, 1, 2000) <= 0)
                return finish("no echo within 2 s after " + std::to_string(k) + " echoes");
            const ssize_t n = ::recv(fd.get(), got.data() + have, got.size() - have, 0);
            if (n <= 0) return finish("the server closed the connection");
            have += static_cast<std::size_t>(n);
        }
        rtts.push_back(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
        if (got != msg) return finish("echo " + std::to_string(k + 1) + " came back different");
        ++r.echoed;
    }
    std::nth_element(rtts.begin(), rtts.begin() + static_cast<long>(rtts.size() / 2), rtts.end());
    r.rtt_p50_us = rtts[rtts.size() / 2];

    // Idle: the connection stays open, nothing comes. A bounded spin sleeps.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const long before = cpu_ms(c.pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    r.idle_cpu_ms = cpu_ms(c.pid) - before;

    fd.reset();
    ::kill(c.pid, SIGTERM);
    const std::string rest = read_until(c.out.get(), "summary:", 3000);
    if (rest.find("summary:") == std::string::npos)
        return finish("the server did not stop within 3 s of SIGTERM");
    ::waitpid(c.pid, nullptr, 0);
    if (rest.find("spin: ") == std::string::npos)
        return finish("the server printed no 'spin:' line");
    r.polls = counter(rest, "polls");
    r.hits = counter(rest, "hits");
    r.blocks = counter(rest, "blocks");
    r.spin_p50_us = counter(rest, "spin_p50_us");
    return r;
}

int check(int spin_us, std::size_t requests) {
    const Run base = run_one(0, requests);
    const Run spin = run_one(spin_us, requests);
    auto per = [&](unsigned long long n) {
        return static_cast<double>(n) / static_cast<double>(requests);
    };
    std::printf("spin_us=%d\nrequests=%zu\n", spin_us, requests);
    std::printf("echoed=%zu\nechoed_spin0=%zu\n", spin.echoed, base.echoed);
    std::printf("blocks_per_request_spin0=%.3f\nblocks_per_request=%.3f\n", per(base.blocks),
                per(spin.blocks));
    std::printf("hits_per_request=%.3f\npolls_per_request=%.1f\n", per(spin.hits), per(spin.polls));
    std::printf("spin_p50_us=%llu\n", spin.spin_p50_us);
    std::printf("rtt_p50_us_spin0=%ld\nrtt_p50_us=%ld\n", base.rtt_p50_us, spin.rtt_p50_us);
    std::printf("idle_cpu_ms=%ld\n", spin.idle_cpu_ms);
    std::fflush(stdout);

    std::string why;
    if (!base.problem.empty())
        why = "with --spin-us 0: " + base.problem;
    else if (!spin.problem.empty())
        why = "with --spin-us " + std::to_string(spin_us) + ": " + spin.problem +
              (spin.problem.find("SIGTERM") != std::string::npos ||
                       spin.problem.find("no echo") != std::string::npos
                   ? " (likely: the spin never ends, so nothing else runs)"
                   : "");
    else if (spin.idle_cpu_ms > 100)
        why = "the idle server used " + std::to_string(spin.idle_cpu_ms) +
              " ms of CPU in 500 ms with no request: the spin has no bound (it never blocks)";
    else if (spin.hits == 0)
        why = "no request was found while spinning (hits=0, polls=" + std::to_string(spin.polls) +
              "): spin_then_block does not spin before it blocks";
    else if (spin.blocks == 0)
        why = "the server never blocked: the spin has no bound";
    else if (spin.spin_p50_us > static_cast<unsigned long long>(spin_us) + 2000)
        why = "a wait spun a median of " + std::to_string(spin.spin_p50_us) +
              " µs before it blocked, the bound is " + std::to_string(spin_us) +
              " µs (milliseconds for microseconds?)";
    else if (spin.spin_p50_us * 2 < static_cast<unsigned long long>(spin_us))
        why = "a wait spun a median of only " + std::to_string(spin.spin_p50_us) +
              " µs before it blocked, the bound is " + std::to_string(spin_us) +
              " µs: the spin gives up early";
    if (!why.empty()) {
        std::printf("check: FAIL — %s\n", why.c_str());
        return 3;
    }
    std::printf(
        "check: PASS — %zu echoes intact; %.2f blocks per request against %.2f without "
        "the spin; the spin stops after about %llu µs and the idle server sleeps\n",
        requests, per(spin.blocks), per(base.blocks), spin.spin_p50_us);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int spin_us = 0;
    bool check_mode = false;
    std::size_t requests = 5000;
    auto options = [&](CLI::App& app, iolab::EchoOptions& /*opts*/) {
        app.add_option("--spin-us", spin_us, "Spin this long before sleeping in epoll_wait")
            ->check(CLI::Range(0, 100'000))
            ->capture_default_str();
        app.add_flag("--check", check_mode,
                     "Run the check: start this server twice (--spin-us 0 and the given one), "
                     "measure, print check: PASS or FAIL (exit 3)");
        app.add_option("--requests", requests, "--check: echoes per run")
            ->check(CLI::Range(std::size_t{100}, std::size_t{1'000'000}))
            ->capture_default_str();
    };
    // --check is decided before echo_main would start a server: parse a copy.
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--check") == 0) check_mode = true;
    if (check_mode) {
        CLI::App app{"ex-spin-wait --check"};
        iolab::EchoOptions unused;
        iolab::add_echo_options(app, "ex-spin-wait", unused);
        options(app, unused);
        IOLAB_PARSE(app, argc, argv);
        return iolab::guarded_main("ex-spin-wait", [&] {
            iolab::ignore_sigpipe();
            return check(spin_us, requests);
        });
    }
    return iolab::echo_main(
        argc, argv, "ex-spin-wait",
        "Write it yourself (lab 10): an echo server on epoll that spins before it sleeps", options,
        [&](const iolab::EchoOptions&) { return SpinEpoll(spin_us); });
}
