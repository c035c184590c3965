// dispatch-bench — what one round of select(2), poll(2) and epoll_wait(2) costs
// as the number of watched descriptors grows, measured the way libevent's
// test/bench.c measures it, on the raw system calls and on libevent itself.
//
// Usage: dispatch-bench [--backend select|poll|epoll|all] [--fds PAIRS,... (100,1000,10000)]
//                       [--active 1,100] [--writes 1000 | --rounds R] [--runs 10]
//                       [--no-libevent] [--json FILE]
//
// The method. P socketpairs; the program watches one end of each for
// readability. A of them ("active") get one byte each; every time a byte is
// read from pair i, one byte is written into pair i+1 (mod P), W times in all,
// so A bytes keep circulating while the other P-A pairs stay idle. One "round"
// is one call of the wait primitive plus the handling of what it reported; a
// run ends when every byte written has been read (A+W events; --rounds R sets
// W = R*A, so that every point has about R+1 rounds). We time the run and
// report per run the time per round and per event; the figure is the median
// over --runs runs. Registering the descriptors (building the fd_set or the
// pollfd array, epoll_ctl, event_add) and a short untimed warm-up run happen
// before the clock starts: what is measured is the steady-state cost of
// asking the kernel "which of these are ready?" and answering the handful
// that are.
//
// The clock is the thread's CPU time (user + system, CLOCK_THREAD_CPUTIME_ID):
// on a machine shared with other work, wall time would also count the moments
// the scheduler ran someone else (the JSON has the wall figure too). The
// variants take turns run by run — select, libevent's select, poll, ... then
// again — each registering its descriptors afresh, so that a burst of load
// from elsewhere hits all of them alike. Only one epoll instance watches the
// pairs at any time: every extra one would add a wakeup to every write.
//
// What to expect, and why:
//   select  copies a bitmap of maxfd+1 bits in and out of the kernel, and the
//           kernel polls every descriptor in it; our loop then tests every bit.
//           O(maxfd) per round, however few are ready. glibc's fd_set holds
//           FD_SETSIZE (1024) descriptors: past that FD_SET writes out of
//           bounds (a fortified build aborts instead), so select is skipped,
//           with a note, when the highest watched descriptor is >= FD_SETSIZE.
//           The kernel itself would take a larger bitmap — libevent's select
//           backend allocates one — but Debian's libevent is built with
//           _FORTIFY_SOURCE and its FD_SET aborts all the same, so the
//           libevent select reference is skipped there too.
//   poll    copies P struct pollfd (8 bytes each) in and out; the kernel calls
//           every file's poll method. O(P) per round.
//   epoll   the interest list lives in the kernel (epoll_ctl once); a file
//           that becomes ready puts itself on the ready list through a
//           wakeup callback; epoll_wait copies out only ready entries.
//           O(ready) per round, independent of P.
// With A=P (everything active) the three do comparable work per event; with
// few active among many idle, select and poll pay for every idle descriptor
// on every round. That is the OLS 2004 result (Gammo, Brecht et al.).
//
// The library reference: the same method on a libevent event_base forced to
// one backend (event_config_avoid_method on every other method), with one
// persistent EV_READ event per pair, dispatched with EVLOOP_ONCE|EVLOOP_NONBLOCK
// as bench.c does. Our raw loops also wait with a zero timeout, so both sides
// do the same thing per round.
//
// Linux notes: each pair costs two descriptors, so RLIMIT_NOFILE bounds P; the
// soft limit is raised to the hard limit, and a P that does not fit is skipped
// with a note naming the limit. AF_UNIX stream socketpairs deliver a write to
// the peer's receive queue synchronously, so a round never comes back empty;
// an empty round is therefore checked against a deadline, and a run that does
// not finish in time is reported as failed instead of hanging.

#include <event2/event.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/dispatch-bench/backend_epoll.hpp"
#include "bench/dispatch-bench/backend_poll.hpp"
#include "bench/dispatch-bench/backend_select.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/server.hpp"

namespace {

using namespace iolab;
using Clock = std::chrono::steady_clock;

// Descriptors the process needs besides the pairs: stdio, an epoll instance,
// libevent's internals, the JSON file. Generous on purpose.
constexpr uint64_t kReservedFds = 64;
// A run that has not finished after this long is declared failed.
constexpr auto kRunDeadline = std::chrono::seconds(20);

// ---- the descriptors under test ---------------------------------------------

// P socketpairs: read_fd(i) is watched, write_fd(i) is where pair i's byte
// comes from. Both ends non-blocking, so a spurious readiness can never stall
// the loop in recv().
class Pairs {
  public:
    explicit Pairs(std::size_t n) {
        read_.reserve(n);
        write_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            int sv[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
                throw_sys("socketpair", fmt::format("pair {} of {}", i + 1, n));
            read_.emplace_back(sv[0]);
            write_.emplace_back(sv[1]);
        }
    }
    [[nodiscard]] std::size_t size() const noexcept { return read_.size(); }
    [[nodiscard]] int read_fd(std::size_t i) const noexcept { return read_[i].get(); }
    [[nodiscard]] int write_fd(std::size_t i) const noexcept { return write_[i].get(); }
    // Reads whatever is left in every pair (after a run that failed), so the
    // next run starts from empty sockets.
    void drain() const noexcept {
        char buf[256];
        for (const Fd& f : read_)
            while (::recv(f.get(), buf, sizeof buf, 0) > 0) {
            }
    }
    [[nodiscard]] int max_read_fd() const noexcept {
        int m = -1;
        for (const Fd& f : read_)
            m = std::max(m, f.get());
        return m;
    }

  private:
    std::vector<Fd> read_;
    std::vector<Fd> write_;
};

// The state of one run: bytes read (count), bytes written (fired), writes
// still to chain, and the errors seen. on_readable() is the whole "server".
class Chain {
  public:
    explicit Chain(const Pairs& pairs) : pairs_(pairs) {}

    // Starts a run: one byte into each of `active` pairs spread evenly over P.
    void start(std::size_t active, uint64_t writes) {
        count_ = 0;
        fired_ = 0;
        writes_left_ = writes;
        round_events_ = 0;
        const std::size_t space = pairs_.size() / active;
        for (std::size_t a = 0; a < active; ++a) {
            if (::send(pairs_.write_fd(a * space), "e", 1, MSG_NOSIGNAL) == 1)
                ++fired_;
            else
                ++failures_;
        }
    }

    void on_readable(std::size_t i) {
        ++round_events_;
        char ch;
        ssize_t n = ::recv(pairs_.read_fd(i), &ch, 1, 0);
        if (n > 0)
            count_ += static_cast<uint64_t>(n);
        else if (!(n < 0 && (errno == EAGAIN || errno == EINTR)))
            ++failures_;
        if (writes_left_ > 0) {
            std::size_t next = i + 1 == pairs_.size() ? 0 : i + 1;
            if (::send(pairs_.write_fd(next), "e", 1, MSG_NOSIGNAL) == 1)
                ++fired_;
            else
                ++failures_;
            --writes_left_;
        }
    }

    [[nodiscard]] bool done() const noexcept { return count_ == fired_; }
    [[nodiscard]] uint64_t fired() const noexcept { return fired_; }
    [[nodiscard]] uint64_t failures() const noexcept { return failures_; }
    // Events handled since the last call (used to spot an empty round).
    uint64_t take_round_events() noexcept { return std::exchange(round_events_, 0); }
    [[nodiscard]] const Pairs& pairs() const noexcept { return pairs_; }

  private:
    const Pairs& pairs_;
    uint64_t count_ = 0;
    uint64_t fired_ = 0;
    uint64_t writes_left_ = 0;
    uint64_t failures_ = 0;
    uint64_t round_events_ = 0;
};

// ---- the raw backends ---------------------------------------------------------
// SelectBackend, PollBackend and EpollBackend (backend_*.hpp) share three
// verbs: add(fd, key), remove(fd), wait(timeout) -> the ready keys. RawLoop
// registers every read end (outside the clock); round() is one wait with a
// zero timeout plus the dispatch of what it reported.

template <class Backend>
class RawLoop {
  public:
    explicit RawLoop(Chain& chain) : chain_(chain) {
        const Pairs& p = chain.pairs();
        for (std::size_t i = 0; i < p.size(); ++i)
            backend_.add(p.read_fd(i), i);
    }
    void round() {
        for (std::size_t i : backend_.wait(0))
            chain_.on_readable(i);
    }

  private:
    Chain& chain_;
    Backend backend_;
};

// ---- the libevent reference -----------------------------------------------------

struct EventBaseFree {
    void operator()(event_base* b) const noexcept { event_base_free(b); }
};
struct EventFree {
    void operator()(event* e) const noexcept { event_free(e); }
};
struct EventConfigFree {
    void operator()(event_config* c) const noexcept { event_config_free(c); }
};

std::vector<std::string> libevent_methods() {
    std::vector<std::string> out;
    for (const char** m = event_get_supported_methods(); m != nullptr && *m != nullptr; ++m)
        out.emplace_back(*m);
    return out;
}

// An event_base that can only pick `method`; nullptr (and a note) when it
// cannot be had.
std::unique_ptr<event_base, EventBaseFree> forced_base(const std::string& method,
                                                       std::string& note) {
    std::unique_ptr<event_config, EventConfigFree> cfg(event_config_new());
    if (!cfg) {
        note = "event_config_new failed";
        return nullptr;
    }
    for (const std::string& m : libevent_methods())
        if (m != method) event_config_avoid_method(cfg.get(), m.c_str());
    // Single-threaded: no locks, as bench.c (which never enables threading).
    event_config_set_flag(cfg.get(), EVENT_BASE_FLAG_NOLOCK);
    std::unique_ptr<event_base, EventBaseFree> base(event_base_new_with_config(cfg.get()));
    if (!base) {
        note = fmt::format("libevent has no usable '{}' backend here", method);
        return nullptr;
    }
    if (method != event_base_get_method(base.get())) {
        note = fmt::format("libevent picked '{}' instead of '{}'",
                           event_base_get_method(base.get()), method);
        return nullptr;
    }
    return base;
}

class LibeventBackend {
  public:
    LibeventBackend(Chain& chain, std::unique_ptr<event_base, EventBaseFree> base)
        : chain_(chain), base_(std::move(base)) {
        if (!base_) throw std::runtime_error("libevent: no event_base for the requested backend");
        const Pairs& p = chain.pairs();
        slots_.resize(p.size());
        events_.reserve(p.size());
        for (std::size_t i = 0; i < p.size(); ++i) {
            slots_[i] = Slot{this, i};
            event* ev = event_new(base_.get(), p.read_fd(i), EV_READ | EV_PERSIST,
                                  &LibeventBackend::on_event, &slots_[i]);
            if (ev == nullptr) throw_sys("event_new", fmt::format("fd {}", p.read_fd(i)), ENOMEM);
            events_.emplace_back(ev);
            if (event_add(ev, nullptr) != 0)
                throw_sys("event_add", fmt::format("fd {}", p.read_fd(i)), EINVAL);
        }
        // bench.c runs the loop once before the clock starts: the backend
        // applies the pending changes (epoll_ctl for the epoll method).
        event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    ~LibeventBackend() {
        events_.clear();  // every event before its base
    }
    LibeventBackend(const LibeventBackend&) = delete;
    LibeventBackend& operator=(const LibeventBackend&) = delete;

    void round() {
        if (event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK) < 0)
            throw_sys("event_base_loop", event_base_get_method(base_.get()), EIO);
    }

  private:
    struct Slot {
        LibeventBackend* self = nullptr;
        std::size_t index = 0;
    };
    static void on_event(evutil_socket_t, short, void* arg) {
        auto* slot = static_cast<Slot*>(arg);
        slot->self->chain_.on_readable(slot->index);
    }

    Chain& chain_;
    std::unique_ptr<event_base, EventBaseFree> base_;
    std::vector<Slot> slots_;
    std::vector<std::unique_ptr<event, EventFree>> events_;
};

// ---- measuring --------------------------------------------------------------------

// The CPU time (user + system) of this thread. On a machine shared with other
// work, wall time also counts the moments the scheduler gave the CPU to
// someone else; the thread's CPU time counts only what the dispatch cost us.
double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct RunSample {
    double cpu_seconds = 0;
    double wall_seconds = 0;
    uint64_t rounds = 0;
    uint64_t events = 0;
};

// One run: start the chain, call round() until every byte is read.
template <class Backend>
std::optional<RunSample> run_once(Backend& backend, Chain& chain, std::size_t active,
                                  uint64_t writes) {
    chain.start(active, writes);
    RunSample s;
    const double c0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    do {
        backend.round();
        ++s.rounds;
        // A round that handled nothing cannot happen with socketpairs (see the
        // header); if it does, the deadline keeps a broken run from spinning.
        if (chain.take_round_events() == 0 && Clock::now() - t0 > kRunDeadline) return std::nullopt;
    } while (!chain.done());
    const auto t1 = Clock::now();
    s.cpu_seconds = thread_cpu_seconds() - c0;
    s.wall_seconds = std::chrono::duration<double>(t1 - t0).count();
    s.events = chain.fired();
    return s;
}

// One way of dispatching: a mechanism (select, poll, epoll) through our raw
// loop or through libevent.
struct Variant {
    std::string backend;
    std::string library;  // raw | libevent
};

// All the measurements of one variant at one (fds, active) point.
struct Point {
    Variant variant;
    std::size_t fds = 0;
    std::size_t active = 0;
    uint64_t writes = 0;
    int runs = 0;
    bool skipped = false;
    std::string note;
    uint64_t failures = 0;
    std::vector<RunSample> samples;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

nlohmann::json point_json(const Point& pt) {
    nlohmann::json j = {{"backend", pt.variant.backend},
                        {"library", pt.variant.library},
                        {"fds", pt.fds},
                        {"active", pt.active},
                        {"writes", pt.writes},
                        {"runs", pt.runs},
                        {"skipped", pt.skipped},
                        {"note", pt.note},
                        {"failures", pt.failures}};
    if (pt.samples.empty()) return j;
    std::vector<double> per_round, per_event, wall_round, rounds;
    for (const RunSample& s : pt.samples) {
        per_round.push_back(s.cpu_seconds * 1e6 / static_cast<double>(s.rounds));
        per_event.push_back(s.cpu_seconds * 1e6 / static_cast<double>(s.events));
        wall_round.push_back(s.wall_seconds * 1e6 / static_cast<double>(s.rounds));
        rounds.push_back(static_cast<double>(s.rounds));
    }
    j["us_per_round"] = median(per_round);
    j["us_per_event"] = median(per_event);
    j["wall_us_per_round"] = median(wall_round);
    j["rounds_per_run"] = median(rounds);
    j["events_per_run"] = pt.samples.front().events;
    j["us_per_round_min"] = *std::min_element(per_round.begin(), per_round.end());
    j["us_per_round_max"] = *std::max_element(per_round.begin(), per_round.end());
    j["completed_runs"] = pt.samples.size();
    return j;
}

// ---- the program ----------------------------------------------------------------------

std::string read_first_match(const char* path, const std::string& key) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key, 0) == 0) {
            auto colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string v = line.substr(colon + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    }
    return "unknown";
}

nlohmann::json machine_json(uint64_t nofile) {
    utsname u{};
    ::uname(&u);
    return {{"kernel", fmt::format("{} {}", u.sysname, u.release)},
            {"arch", u.machine},
            {"cpu", read_first_match("/proc/cpuinfo", "model name")},
            {"cpus", ::sysconf(_SC_NPROCESSORS_ONLN)},
            {"libevent", event_get_version()},
            {"fd_setsize", FD_SETSIZE},
            {"rlimit_nofile", nofile}};
}

struct Options {
    std::string backend = "all";
    std::vector<std::size_t> fds{100, 1000, 10000};
    std::vector<std::size_t> active{1, 100};
    uint64_t writes = 1000;
    std::optional<uint64_t> rounds;  // when set: writes = rounds * active
    int runs = 10;
    bool libevent = true;
    std::string json_path;
};

class Bench {
  public:
    explicit Bench(Options opts) : opts_(std::move(opts)) {}

    int run() {
        nofile_ = raise_nofile_limit();
        const std::size_t max_pairs =
            nofile_ > kReservedFds ? static_cast<std::size_t>((nofile_ - kReservedFds) / 2) : 0;
        for (const std::string& b : opts_.backend == "all"
                                        ? std::vector<std::string>{"select", "poll", "epoll"}
                                        : std::vector<std::string>{opts_.backend}) {
            variants_.push_back({b, "raw"});
            if (opts_.libevent) variants_.push_back({b, "libevent"});
        }
        fmt::print("dispatch-bench: {} runs={} RLIMIT_NOFILE={} (at most {} pairs); CPU time\n",
                   opts_.rounds ? fmt::format("writes={}*active", *opts_.rounds)
                                : fmt::format("writes={}", opts_.writes),
                   opts_.runs, nofile_, max_pairs);
        fmt::print("{:>8} {:>8} {:>7} {:>7} {:>12} {:>12} {:>8}\n", "backend", "lib", "fds",
                   "active", "us/round", "us/event", "rounds");
        std::fflush(stdout);

        for (std::size_t p : opts_.fds) {
            std::string why;
            std::optional<Pairs> pairs;
            if (p > max_pairs) {
                why = fmt::format(
                    "{} pairs need {} descriptors; RLIMIT_NOFILE is {} (the hard limit), "
                    "which allows at most {} pairs",
                    p, 2 * p + kReservedFds, nofile_, max_pairs);
            } else {
                try {
                    pairs.emplace(p);
                } catch (const SysError& e) {
                    why = e.what();
                }
            }
            for (std::size_t a : opts_.active) {
                if (!pairs) {
                    for (const Variant& v : variants_)
                        record(skipped_point(v, p, a, why));
                } else {
                    measure_point(*pairs, a);
                }
            }
        }

        if (!opts_.json_path.empty()) write_json();
        uint64_t failures = 0;
        for (const Point& pt : points_)
            failures += pt.failures;
        if (failures > 0) {
            log_line(fmt::format("dispatch-bench: {} send/recv failures", failures));
            return 1;
        }
        return 0;
    }

  private:
    Point new_point(const Variant& v, std::size_t fds, std::size_t active) const {
        Point pt;
        pt.variant = v;
        pt.fds = fds;
        pt.active = active;
        pt.writes = opts_.rounds ? *opts_.rounds * active : opts_.writes;
        pt.runs = opts_.runs;
        return pt;
    }

    Point skipped_point(const Variant& v, std::size_t fds, std::size_t active,
                        std::string why) const {
        Point pt = new_point(v, fds, active);
        pt.skipped = true;
        pt.note = std::move(why);
        return pt;
    }

    // Why `v` cannot run on these pairs; empty when it can.
    std::string cannot_run(const Variant& v, const Pairs& pairs, std::size_t active) const {
        if (active > pairs.size())
            return fmt::format("active={} is more than fds={}", active, pairs.size());
        const int maxfd = pairs.max_read_fd();
        if (v.backend == "select" && maxfd >= FD_SETSIZE) {
            // libevent's select backend sizes its bitmaps itself, but still
            // sets bits with FD_SET; Debian builds libevent with
            // _FORTIFY_SOURCE, whose checked FD_SET aborts the process ("bit
            // out of range 0 - FD_SETSIZE on fd_set") past FD_SETSIZE.
            return v.library == "raw" ? fmt::format(
                                            "highest descriptor {} >= FD_SETSIZE ({}): an fd_set "
                                            "cannot hold it",
                                            maxfd, FD_SETSIZE)
                                      : fmt::format(
                                            "highest descriptor {} >= FD_SETSIZE ({}): libevent's "
                                            "select backend aborts (fortified FD_SET)",
                                            maxfd, FD_SETSIZE);
        }
        if (v.library == "libevent") {
            std::string note;
            if (!forced_base(v.backend, note)) return note;
        }
        return {};
    }

    // Registers, warms up, runs once and unregisters — so that the variants
    // can take turns run by run and a burst of load from elsewhere on the
    // machine hits all of them alike. Only one epoll instance watches the
    // pairs at any time: each extra one would add a wakeup to every write.
    template <class Backend>
    std::optional<RunSample> warm_then_time(Backend& backend, Chain& chain, std::size_t active,
                                            uint64_t writes) {
        // Warm-up: a short run, untimed, to bring code and data into cache.
        if (!run_once(backend, chain, active, std::min<uint64_t>(writes, 10 * active)))
            return std::nullopt;
        return run_once(backend, chain, active, writes);
    }

    std::optional<RunSample> one_run(const Variant& v, Chain& chain, std::size_t active,
                                     uint64_t writes) {
        if (v.library == "libevent") {
            std::string note;
            LibeventBackend backend(chain, forced_base(v.backend, note));
            return warm_then_time(backend, chain, active, writes);
        }
        if (v.backend == "select") {
            RawLoop<bench::SelectBackend> backend(chain);
            return warm_then_time(backend, chain, active, writes);
        }
        if (v.backend == "poll") {
            RawLoop<bench::PollBackend> backend(chain);
            return warm_then_time(backend, chain, active, writes);
        }
        RawLoop<bench::EpollBackend> backend(chain);
        return warm_then_time(backend, chain, active, writes);
    }

    void measure_point(const Pairs& pairs, std::size_t active) {
        std::vector<Point> pts;
        for (const Variant& v : variants_) {
            Point pt = new_point(v, pairs.size(), active);
            pt.note = cannot_run(v, pairs, active);
            pt.skipped = !pt.note.empty();
            pts.push_back(std::move(pt));
        }
        for (int r = 0; r < opts_.runs; ++r) {
            for (Point& pt : pts) {
                if (pt.skipped) continue;
                Chain chain(pairs);
                std::optional<RunSample> s = one_run(pt.variant, chain, active, pt.writes);
                pt.failures += chain.failures();
                if (!s) {
                    pairs.drain();
                    pt.skipped = true;
                    pt.note = fmt::format("run {} did not finish within {} s", r + 1,
                                          kRunDeadline.count());
                    continue;
                }
                pt.samples.push_back(*s);
            }
        }
        for (Point& pt : pts)
            record(std::move(pt));
    }

    void record(Point pt) {
        nlohmann::json j = point_json(pt);
        if (pt.skipped) {
            fmt::print("{:>8} {:>8} {:>7} {:>7}  skipped: {}\n", pt.variant.backend,
                       pt.variant.library, pt.fds, pt.active, pt.note);
        } else {
            fmt::print("{:>8} {:>8} {:>7} {:>7} {:>12.3f} {:>12.3f} {:>8}{}\n", pt.variant.backend,
                       pt.variant.library, pt.fds, pt.active, j["us_per_round"].get<double>(),
                       j["us_per_event"].get<double>(), j["rounds_per_run"].get<double>(),
                       pt.failures ? fmt::format("  FAILURES={}", pt.failures) : "");
        }
        std::fflush(stdout);
        results_.push_back(std::move(j));
        points_.push_back(std::move(pt));
    }

    void write_json() const {
        nlohmann::json params = {{"backend", opts_.backend},
                                 {"fds", opts_.fds},
                                 {"active", opts_.active},
                                 {"runs", opts_.runs},
                                 {"libevent", opts_.libevent}};
        if (opts_.rounds)
            params["rounds"] = *opts_.rounds;
        else
            params["writes"] = opts_.writes;
        nlohmann::json doc = {
            {"tool", "dispatch-bench"},
            {"method",
             "libevent test/bench.c: P socketpairs, A active, W chained writes per run; "
             "median over runs of thread CPU time per dispatch round"},
            {"params", params},
            {"machine", machine_json(nofile_)},
            {"results", results_}};
        std::string text = doc.dump(2) + "\n";
        // Written to a temporary name and renamed: a reader never sees half a file.
        std::string tmp = opts_.json_path + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            if (!out) throw_sys("open", tmp);
            out << text;
            out.flush();
            if (!out) throw_sys("write", tmp);
        }
        if (std::rename(tmp.c_str(), opts_.json_path.c_str()) != 0)
            throw_sys("rename", fmt::format("{} -> {}", tmp, opts_.json_path));
    }

    Options opts_;
    uint64_t nofile_ = 0;
    std::vector<Variant> variants_;
    std::vector<Point> points_;
    nlohmann::json results_ = nlohmann::json::array();
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"dispatch-bench: cost of select/poll/epoll per round vs watched descriptors"};
    Options opts;
    app.add_option("--backend", opts.backend, "select, poll, epoll or all")
        ->check(CLI::IsMember({"select", "poll", "epoll", "all"}))
        ->capture_default_str();
    app.add_option("--fds,--pairs", opts.fds,
                   "socket pairs per point, comma-separated: the read end of each is watched, "
                   "so P pairs open 2P descriptors (2,000 pairs: descriptors up to about 4,003)")
        ->delimiter(',')
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
        ->default_str("100,1000,10000");
    app.add_option("--active", opts.active, "active pairs per run, comma-separated")
        ->delimiter(',')
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
        ->default_str("1,100");
    auto* writes = app.add_option("--writes", opts.writes, "chained writes per run")
                       ->check(CLI::Range(uint64_t{0}, uint64_t{100'000'000}))
                       ->capture_default_str();
    app.add_option("--rounds", opts.rounds,
                   "instead of --writes: writes = ROUNDS * active, so every point has about "
                   "ROUNDS+1 rounds")
        ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000}))
        ->excludes(writes);
    app.add_option("--runs", opts.runs, "timed runs per point (median reported)")
        ->check(CLI::Range(1, 100'000))
        ->capture_default_str();
    bool no_libevent = false;
    app.add_flag("--no-libevent", no_libevent, "skip the libevent reference");
    app.add_option("--json", opts.json_path, "write the results as JSON to FILE");
    setup_program(app, "dispatch-bench",
                  "Exit codes:\n"
                  "  0  every point measured\n"
                  "  1  runtime error (the message names the call)\n"
                  "  2  usage error");
    IOLAB_PARSE(app, argc, argv);
    opts.libevent = !no_libevent;
    return guarded_main("dispatch-bench", [&] { return Bench(opts).run(); });
}
