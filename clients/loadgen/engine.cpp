// The engine: one epoll loop per worker thread over non-blocking sockets.
//
// Each worker owns its connections, its buffers and its counters; nothing is
// shared on the hot path, so no lock is taken and nothing is allocated per
// request (the HTTP mode's framer keeps no heap state at all). The sockets are
// registered once, edge-triggered, for reading and writing: a request is
// written the moment the previous reply ends, without an epoll_ctl per
// request.
//
// A connection's handlers never close it. Each returns an Outcome (go on,
// failed, or closed by the server), passed up to on_event() or the timer loop,
// and settle() alone closes, reopens or gives the connection up. So no handler
// ever finds its socket replaced under it.
//
// Timers need no heap either: every deadline of one kind is "now + a fixed
// delay", so the connections waiting for one form a list already sorted by
// deadline (append at the tail, expire from the head). The reconnect back-off
// grows (10 ms doubling to 1 s), so it has one such list per step. The open
// loop's schedule is a fixed cycle over the connections: connection i of n
// sends at t0 + (k*n + i) * tick.
#include "clients/loadgen/engine.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "clients/loadgen/http_reply.hpp"
#include "clients/loadgen/plan.hpp"
#include "clients/loadgen/wait_policy.hpp"
#include "common/error.hpp"

namespace loadgen {

uint64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

ProcessUsage process_usage(int pid) {
    ProcessUsage u;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return u;
    // The command name is in parentheses and may hold spaces: count fields
    // from the last ')'. Then: state(3) ... utime(14) stime(15).
    const std::size_t paren = line.rfind(')');
    if (paren == std::string::npos) return u;
    std::istringstream rest(line.substr(paren + 1));
    std::string field;
    uint64_t utime = 0, stime = 0;
    for (int k = 3; k <= 15 && rest >> field; ++k) {
        if (k == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
        if (k == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    const long hz = ::sysconf(_SC_CLK_TCK);
    u.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(hz > 0 ? hz : 100);
    // Switches are counted per thread: add up the threads alive now.
    std::error_code ec;
    for (const auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        std::ifstream st(t.path() / "status");
        std::string l;
        std::pair<uint64_t, uint64_t> sw{0, 0};
        while (std::getline(st, l)) {
            if (l.rfind("voluntary_ctxt_switches:", 0) == 0)
                sw.first = std::strtoull(l.c_str() + 24, nullptr, 10);
            else if (l.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
                sw.second = std::strtoull(l.c_str() + 27, nullptr, 10);
        }
        u.tasks[std::atoi(t.path().filename().c_str())] = sw;
    }
    u.ok = true;
    return u;
}

std::pair<uint64_t, uint64_t> switches_between(const ProcessUsage& a, const ProcessUsage& b) {
    std::pair<uint64_t, uint64_t> d{0, 0};
    for (const auto& [tid, sw] : b.tasks) {
        auto it = a.tasks.find(tid);
        const auto from = it == a.tasks.end() ? std::pair<uint64_t, uint64_t>{0, 0} : it->second;
        d.first += sw.first >= from.first ? sw.first - from.first : 0;
        d.second += sw.second >= from.second ? sw.second - from.second : 0;
    }
    return d;
}

namespace {

// This thread's CPU time and context switches so far.
struct ThreadUsage {
    uint64_t cpu_ns = 0, vcsw = 0, ivcsw = 0;
};
ThreadUsage thread_usage() noexcept {
    rusage ru{};
    ::getrusage(RUSAGE_THREAD, &ru);
    auto ns = [](const timeval& tv) {
        return static_cast<uint64_t>(tv.tv_sec) * 1'000'000'000u +
               static_cast<uint64_t>(tv.tv_usec) * 1000u;
    };
    return {ns(ru.ru_utime) + ns(ru.ru_stime), static_cast<uint64_t>(ru.ru_nvcsw),
            static_cast<uint64_t>(ru.ru_nivcsw)};
}

}  // namespace

const char* error_kind_name(ErrorKind k) noexcept {
    switch (k) {
        case ErrorKind::connect:
            return "connect";
        case ErrorKind::read:
            return "read";
        case ErrorKind::write:
            return "write";
        case ErrorKind::timeout:
            return "timeout";
        case ErrorKind::closed:
            return "closed";
        case ErrorKind::verify:
            return "verify";
        case ErrorKind::protocol:
            return "protocol";
        case ErrorKind::status:
            return "status";
        case ErrorKind::count_:
            break;
    }
    return "?";
}

std::string error_text(ErrorKind k, int code, uint64_t timeout_ns) {
    switch (k) {
        case ErrorKind::connect:
        case ErrorKind::read:
        case ErrorKind::write:
            return iolab::errno_text(code);
        case ErrorKind::timeout: {
            char buf[64];
            std::snprintf(buf, sizeof buf, "no complete reply within %.3f s",
                          static_cast<double>(timeout_ns) / 1e9);
            return buf;
        }
        case ErrorKind::closed:
            return "connection closed by the server";
        case ErrorKind::verify:
            return "echoed bytes differ from those sent";
        case ErrorKind::protocol:
            if (code == 0) return "bytes the server sent unasked";
            return "bad HTTP response: " + http_error_text(code);
        case ErrorKind::status:
            return "HTTP status " + std::to_string(code);
        case ErrorKind::count_:
            break;
    }
    return "?";
}

void Counts::add(const Counts& o) {
    latency.merge(o.latency);
    uncorrected.merge(o.uncorrected);
    connect.merge(o.connect);
    requests += o.requests;
    bytes_in += o.bytes_in;
    bytes_out += o.bytes_out;
    connects += o.connects;
    connect_failures += o.connect_failures;
    reconnects += o.reconnects;
    max_open += o.max_open;
    client_cpu_ns += o.client_cpu_ns;
    client_vcsw += o.client_vcsw;
    client_ivcsw += o.client_ivcsw;
    wait_spin_ns += o.wait_spin_ns;
    wait_total_ns += o.wait_total_ns;
    wait_probes += o.wait_probes;
    wait_switches += o.wait_switches;
    wait_contended += o.wait_contended;
    wait_blind_ns += o.wait_blind_ns;
}

uint64_t Results::error_total() const {
    uint64_t n = 0;
    for (const auto& [key, v] : errors)
        n += v.second;
    return n;
}

// ---- RunControl -------------------------------------------------------------

RunControl::RunControl(unsigned shares)
    : wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), shares_left_(shares) {
    if (!wake_) iolab::throw_sys("eventfd", "loadgen stop");
}

void RunControl::wake() noexcept {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

void RunControl::stop() noexcept {
    stop_.store(true);
    wake();
}

void RunControl::share_done() noexcept {
    if (shares_left_.fetch_sub(1) == 1) wake();  // the followers end now
}

// ---- the adaptive wait's shared state ----------------------------------------

// --busy-poll auto: one policy for the whole process (the workers share the
// CPUs, so one worker's choice changes what the others measure). Worker 0
// runs it (AdaptiveWait) once an epoch and stores the budget; every worker
// reads the budget before each wait and publishes its running counts, each
// in its own cache line.
struct WaitShared {
    struct alignas(64) Slot {
        std::atomic<uint64_t> spins{0}, hits{0};
        std::atomic<uint64_t> run_delay_ns{0};  // from its schedstat
        std::atomic<bool> run_delay_known{false};
    };
    explicit WaitShared(std::size_t workers) : slots(workers) {}
    std::atomic<uint64_t> budget_ns{0};
    std::vector<Slot> slots;
};

// ---- one connection -------------------------------------------------------

namespace {

constexpr int kMaxCode = 1000;  // errno values, HTTP statuses and parser errors all fit
constexpr std::size_t kReadBuf = 64 * 1024;
constexpr std::size_t kRotate = 256;  // echo payloads start at a moving offset

// Reconnect back-off: 10 ms, doubling, at most 1 s; back to 10 ms after a
// success (a reply, or an idle connection that stayed up a second).
constexpr std::array<uint64_t, 8> kBackoffNs{10'000'000,  20'000'000,  40'000'000,  80'000'000,
                                             160'000'000, 320'000'000, 640'000'000, 1'000'000'000};
constexpr uint64_t kIdleSuccessNs = 1'000'000'000;

enum class St : uint8_t { pending, connecting, ready, busy, waiting, dead };

struct Conn {
    ConnPlan plan;
    iolab::Fd fd;
    St st = St::pending;
    uint8_t list = 0;     // 0: in no timer list; else 1 + index into Worker::timers_
    uint8_t backoff = 0;  // the next back-off step
    bool ever_connected = false;
    bool succeeded = false;  // a reply came in since the socket was opened
    uint32_t url = 0;        // http: next URL of the target
    uint64_t seq = 0;        // requests sent on this connection
    uint64_t t_connect = 0;
    uint64_t t_up = 0;
    uint64_t t_sent = 0;
    uint64_t t_intended = 0;
    uint64_t sent_k = 0;  // open loop: position in this connection's schedule
    uint64_t deadline = 0;
    const char* out = nullptr;
    std::size_t out_len = 0;
    std::size_t out_off = 0;
    uint64_t in_got = 0;
    uint64_t expect = 0;
    Conn* prev = nullptr;
    Conn* next = nullptr;
    std::unique_ptr<HttpReply> http;
};

// An intrusive list sorted by deadline because every entry's delay is the same.
struct TimerList {
    Conn* head = nullptr;
    Conn* tail = nullptr;
    uint64_t delay = 0;
    void push(Conn* c, uint8_t id, uint64_t now) {
        c->deadline = now + delay;
        c->list = id;
        c->prev = tail;
        c->next = nullptr;
        if (tail)
            tail->next = c;
        else
            head = c;
        tail = c;
    }
    void remove(Conn* c) {
        if (c->prev)
            c->prev->next = c->next;
        else
            head = c->next;
        if (c->next)
            c->next->prev = c->prev;
        else
            tail = c->prev;
        c->prev = c->next = nullptr;
        c->list = 0;
    }
};

// What a handler tells its caller: go on, or the connection is over.
enum class Next : uint8_t {
    stay,    // nothing to do
    fail,    // counted as `kind`/`code`, closed; reopened after the back-off
    closed,  // the server ended it normally (HTTP keep-alive over): reopen
};
struct Outcome {
    Next next = Next::stay;
    ErrorKind kind = ErrorKind::connect;
    int code = 0;
};
constexpr Outcome kStay{};
constexpr Outcome failure(ErrorKind k, int code) {
    return Outcome{Next::fail, k, code};
}
constexpr Outcome kClosed{Next::closed, ErrorKind::closed, 0};

}  // namespace

// ---- a worker ---------------------------------------------------------------

// What one worker counted; Engine::join() adds them up.
struct Figures : Counts {
    uint64_t errors_total = 0;
    std::vector<uint64_t> errors;  // [kind * kMaxCode + code]
    std::vector<uint64_t> status;  // [code]
    uint64_t up = 0;               // connections that came up at least once
    uint64_t all_up_at = 0;        // when `up` reached the number of connections
    uint64_t finished_at = 0;
};

class Worker {
  public:
    Worker(const Options& o, WorkerPlan plan, RunControl& control, WaitShared* wait)
        : opts_(o),
          plan_(std::move(plan)),
          control_(control),
          wait_(wait),
          conns_(plan_.conns.size()) {
        if (wait_ && plan_.index == 0) {
            WaitConfig wc;
            wc.spin_ns = static_cast<uint64_t>(opts_.busy_poll_us * 1e3);
            wc.allow_spin = opts_.spin_ruled_out.empty();
            policy_ = std::make_unique<AdaptiveWait>(wc);
            wait_->budget_ns.store(policy_->budget_ns());
        }
        fig_.errors.assign(static_cast<std::size_t>(ErrorKind::count_) * kMaxCode, 0);
        fig_.status.assign(kMaxCode, 0);
        timers_[0].delay = opts_.timeout_ns;
        for (std::size_t k = 0; k < kBackoffNs.size(); ++k)
            timers_[k + 1].delay = kBackoffNs[k];
        alive_ = conns_.size();
        for (std::size_t k = 0; k < conns_.size(); ++k) {
            Conn& c = conns_[k];
            c.plan = plan_.conns[k];
            if (c.plan.active && open_loop()) cycle_.push_back(&c);
            if (opts_.mode == Mode::http) c.http = std::make_unique<HttpReply>();
        }
        if (opts_.mode == Mode::echo || opts_.mode == Mode::idle) {
            std::mt19937_64 rng(12345 + plan_.index);
            payload_.resize(opts_.size + kRotate);
            for (auto& ch : payload_)
                ch = static_cast<char>(rng() & 0xff);
        }
        rbuf_.resize(kReadBuf);
        ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep_) iolab::throw_sys("epoll_create1", "loadgen worker");
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;  // the stop eventfd
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, control_.fd(), &ev) != 0)
            iolab::throw_sys("epoll_ctl", "loadgen stop eventfd");
    }

    [[nodiscard]] bool has_share() const { return plan_.quota > 0; }
    [[nodiscard]] std::size_t size() const { return conns_.size(); }
    [[nodiscard]] const Figures& figures() const { return fig_; }

    LiveSnapshot snapshot() const {
        std::lock_guard lock(live_mu_);
        return snapshot_;
    }

    // The thread's body: the run starts at `start` (monotonic ns).
    void run(uint64_t start);
    // After run(): closes every connection.
    void close_all();

  private:
    [[nodiscard]] bool open_loop() const { return opts_.rate > 0; }
    [[nodiscard]] bool can_issue() const {
        return !plan_.follower && (plan_.quota == 0 || issued_ < plan_.quota);
    }

    void count_error(ErrorKind k, int code) {
        if (code < 0 || code >= kMaxCode) code = kMaxCode - 1;
        ++fig_.errors[static_cast<std::size_t>(k) * kMaxCode + static_cast<std::size_t>(code)];
        ++fig_.errors_total;
    }

    uint64_t tick_time(uint64_t j) const {
        return start_ + static_cast<uint64_t>(static_cast<double>(j) * plan_.tick_ns);
    }
    uint64_t next_intended(const Conn& c) const {
        return tick_time(c.sent_k * cycle_.size() + c.plan.slot);
    }

    void unlist(Conn& c) {
        if (c.list) timers_[c.list - 1].remove(&c);
    }
    void arm(Conn& c, std::size_t list, uint64_t now) {
        timers_[list].push(&c, static_cast<uint8_t>(list + 1), now);
    }

    // ---- the only places a socket is opened or closed ----
    Outcome start_connect(Conn& c, uint64_t now);
    void close_socket(Conn& c);
    void settle(Conn& c, Outcome o, uint64_t now);
    void reopen_later(Conn& c, uint64_t now);

    // ---- handlers: they report, never close ----
    Outcome handle(Conn& c, uint32_t events, uint64_t now);
    Outcome on_connected(Conn& c, uint64_t now);
    Outcome send_request(Conn& c, uint64_t now, uint64_t intended);
    Outcome write_out(Conn& c);
    Outcome read_in(Conn& c, uint32_t events, uint64_t now);
    Outcome on_bytes(Conn& c, const char* p, std::size_t n, uint64_t now);
    Outcome on_eof(Conn& c, uint64_t now);
    Outcome http_done(Conn& c, uint64_t now);
    Outcome reply_done(Conn& c, uint64_t now, bool keep_alive);
    Outcome next_request(Conn& c, uint64_t now);

    void run_timers(uint64_t now);
    int64_t next_wait(uint64_t now) const;
    void publish_wait_counts();
    void read_run_delay(uint64_t now);
    void adapt(uint64_t now);
    void publish(uint64_t now);
    [[nodiscard]] bool done(uint64_t now) const;

    const Options& opts_;
    const WorkerPlan plan_;
    RunControl& control_;
    WaitShared* wait_;                      // null: a fixed --busy-poll
    std::unique_ptr<AdaptiveWait> policy_;  // worker 0 of an adaptive run
    iolab::Fd ep_;
    std::vector<Conn> conns_;   // never resized after construction: epoll and lists point in
    std::vector<Conn*> cycle_;  // open loop: the active connections in schedule order
    std::vector<char> payload_;
    std::vector<char> rbuf_;
    Figures fig_;
    uint64_t open_ = 0;
    std::array<TimerList, 1 + kBackoffNs.size()> timers_;  // [0]: --timeout; then back-off steps

    // schedule
    uint64_t start_ = 0, end_ = 0;  // end_ 0: no time limit
    uint64_t issued_ = 0, inflight_ = 0;
    uint64_t alive_ = 0;  // connections not given up
    std::size_t next_start_ = 0;
    uint64_t cursor_ = 0;
    uint64_t measure_from_ = 0;  // end of --warmup
    bool warm_ = true;
    ThreadUsage usage_at_start_;  // at the start of the measured window

    // the adaptive wait: this worker's spins, and those that found events
    // within the budget (published to wait_)
    uint64_t w_spins_ = 0, w_hits_ = 0;
    // ... and its time spent runnable but waiting for a CPU, read from its
    // /proc/thread-self/schedstat every 10 ms (not there: never known)
    iolab::Fd schedstat_;
    uint64_t next_schedstat_ = 0;
    // worker 0: the epoch's start and the sums read then
    uint64_t epoch_start_ = 0, next_epoch_ = 0;
    WaitSample epoch_base_;

    // live
    mutable std::mutex live_mu_;
    LiveSnapshot snapshot_;
    uint64_t next_publish_ = 0;
};

// ---- opening and closing ----------------------------------------------------

Outcome Worker::start_connect(Conn& c, uint64_t now) {
    const Target& t = opts_.targets[c.plan.target];
    c.t_connect = now;
    c.succeeded = false;
    c.fd.reset(::socket(t.addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!c.fd) return failure(ErrorKind::connect, errno);
    const int fd = c.fd.get();
    if (!opts_.sources.empty()) {
        // Let connect() pick the port for the whole 4-tuple: without this
        // option bind() would reserve a port per source address alone and
        // the ~28k ephemeral ports would be the limit again.
        int one = 1;
        ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const iolab::SockAddr& src = opts_.sources[c.plan.source];
        if (::bind(fd, src.get(), src.len) != 0) return failure(ErrorKind::connect, errno);
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, t.addr.get(), t.addr.len) != 0 && errno != EINPROGRESS)
        return failure(ErrorKind::connect, errno);
    // Registered after connect(): an unconnected socket polls as HUP.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c;
    if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        return failure(ErrorKind::connect, errno);
    c.st = St::connecting;
    arm(c, 0, now);
    return kStay;
}

void Worker::close_socket(Conn& c) {
    unlist(c);
    c.fd.reset();  // also leaves the epoll set
    if (c.st == St::ready || c.st == St::busy) --open_;
    if (c.st == St::busy) --inflight_;
}

// Waits out the back-off step, then connects again (run_timers). A success
// since the last failure starts the steps over.
void Worker::reopen_later(Conn& c, uint64_t now) {
    const bool idle_held = !c.plan.active && c.t_up && now - c.t_up >= kIdleSuccessNs;
    if (c.succeeded || idle_held) c.backoff = 0;
    c.st = St::waiting;
    arm(c, 1 + c.backoff, now);
    if (c.backoff + 1u < kBackoffNs.size()) ++c.backoff;
}

// What a handler reported, carried out: the one place a connection ends.
// A connect that fails gives the connection up (so a run against a server
// that is not there ends instead of spinning); one that was up is opened again
// after the back-off, or at once when the server closed it after a reply.
void Worker::settle(Conn& c, Outcome o, uint64_t now) {
    if (o.next == Next::stay) return;
    if (o.next == Next::fail) count_error(o.kind, o.code);
    const bool after_reply = c.succeeded;
    close_socket(c);
    if (o.next == Next::fail && o.kind == ErrorKind::connect) {
        ++fig_.connect_failures;
        c.st = St::dead;
        --alive_;
        return;
    }
    if (o.next == Next::closed && after_reply) {
        c.backoff = 0;
        c.st = St::pending;
        ++fig_.reconnects;
        settle(c, start_connect(c, now), now);  // a failure here is a connect one: no loop
        return;
    }
    reopen_later(c, now);
}

// ---- handlers ---------------------------------------------------------------

Outcome Worker::handle(Conn& c, uint32_t events, uint64_t now) {
    if (c.st == St::connecting) {
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return kStay;
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0 && (events & EPOLLHUP)) err = ECONNREFUSED;
        if (err != 0) return failure(ErrorKind::connect, err);
        if (Outcome o = on_connected(c, now); o.next != Next::stay) return o;
        if (!(events & (EPOLLIN | EPOLLRDHUP))) return kStay;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (Outcome o = read_in(c, events, now); o.next != Next::stay) return o;
    }
    if ((events & EPOLLOUT) && c.st == St::busy && c.out_off < c.out_len) return write_out(c);
    return kStay;
}

Outcome Worker::on_connected(Conn& c, uint64_t now) {
    unlist(c);
    fig_.connect.record(now - c.t_connect);
    ++fig_.connects;
    ++open_;
    fig_.max_open = std::max(fig_.max_open, open_);
    c.t_up = now;
    if (!c.ever_connected) {
        c.ever_connected = true;
        if (++fig_.up == conns_.size()) fig_.all_up_at = now;
    }
    c.st = St::ready;
    c.out_len = c.out_off = 0;
    if (c.http) c.http->reset();
    if (!c.plan.active) return kStay;  // idle: hold the connection, send nothing
    if (!open_loop()) return send_request(c, now, now);
    // Join the schedule at the first slot not already past.
    const double period = plan_.tick_ns * static_cast<double>(cycle_.size());
    const double since =
        static_cast<double>(now - start_) - static_cast<double>(c.plan.slot) * plan_.tick_ns;
    c.sent_k = since <= 0 ? 0 : static_cast<uint64_t>(std::ceil(since / period));
    return kStay;
}

Outcome Worker::send_request(Conn& c, uint64_t now, uint64_t intended) {
    if (!can_issue()) {
        c.st = St::ready;
        return kStay;
    }
    ++issued_;
    ++inflight_;
    ++c.seq;
    ++c.sent_k;
    const Target& t = opts_.targets[c.plan.target];
    switch (opts_.mode) {
        case Mode::echo:
        case Mode::idle:
            c.out = payload_.data() + (c.seq % kRotate);
            c.out_len = opts_.size;
            c.expect = opts_.size;
            break;
        case Mode::raw:
            c.out = t.requests[0].data();
            c.out_len = t.requests[0].size();
            c.expect = opts_.expect_bytes;
            break;
        case Mode::http:
            c.out = t.requests[c.url].data();
            c.out_len = t.requests[c.url].size();
            if (++c.url == t.requests.size()) c.url = 0;
            break;
    }
    c.out_off = 0;
    c.in_got = 0;
    c.t_sent = now;
    c.t_intended = intended;
    c.st = St::busy;
    arm(c, 0, now);
    return write_out(c);
}

Outcome Worker::write_out(Conn& c) {
    while (c.out_off < c.out_len) {
        ssize_t n = ::send(c.fd.get(), c.out + c.out_off, c.out_len - c.out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c.out_off += static_cast<std::size_t>(n);
            fig_.bytes_out += static_cast<uint64_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return kStay;  // EPOLLOUT follows
        return failure(ErrorKind::write, n < 0 ? errno : EIO);
    }
    return kStay;
}

Outcome Worker::read_in(Conn& c, uint32_t events, uint64_t now) {
    const bool drain = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    for (;;) {
        ssize_t n = ::recv(c.fd.get(), rbuf_.data(), rbuf_.size(), 0);
        if (n > 0) {
            fig_.bytes_in += static_cast<uint64_t>(n);
            Outcome o = on_bytes(c, rbuf_.data(), static_cast<std::size_t>(n), now);
            if (o.next != Next::stay) return o;
            // A TCP read shorter than asked has emptied the receive queue;
            // new data raises a new edge.
            if (static_cast<std::size_t>(n) < rbuf_.size() && !drain) return kStay;
            continue;
        }
        if (n == 0) return on_eof(c, now);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return kStay;
        return failure(ErrorKind::read, errno);
    }
}

// Bytes of a reply, as the mode frames it.
Outcome Worker::on_bytes(Conn& c, const char* p, std::size_t n, uint64_t now) {
    if (c.st != St::busy) return failure(ErrorKind::protocol, 0);
    switch (opts_.mode) {
        case Mode::echo:
        case Mode::idle:
            if (n > c.expect - c.in_got) return failure(ErrorKind::protocol, 0);
            if (opts_.verify && std::memcmp(p, c.out + c.in_got, n) != 0)
                return failure(ErrorKind::verify, 0);
            c.in_got += n;
            return c.in_got == c.expect ? reply_done(c, now, true) : kStay;
        case Mode::raw:
            if (opts_.expect_line) {
                const void* nl = std::memchr(p, '\n', n);
                if (nl == nullptr) {
                    c.in_got += n;
                    return kStay;
                }
                if (static_cast<const char*>(nl) != p + n - 1)
                    return failure(ErrorKind::protocol, 0);
                return reply_done(c, now, true);
            }
            if (n > c.expect - c.in_got) return failure(ErrorKind::protocol, 0);
            c.in_got += n;
            return c.in_got == c.expect ? reply_done(c, now, true) : kStay;
        case Mode::http: {
            std::size_t used = 0;
            HttpReply::Result r = c.http->feed(std::string_view(p, n), used);
            if (r == HttpReply::Result::more) return kStay;
            if (r == HttpReply::Result::failed)
                return failure(ErrorKind::protocol, c.http->error_code());
            if (used != n) return failure(ErrorKind::protocol, 0);  // one request in flight
            return http_done(c, now);
        }
    }
    return kStay;
}

Outcome Worker::on_eof(Conn& c, uint64_t now) {
    if (opts_.mode == Mode::http) {
        if (c.st != St::busy) return kClosed;  // an idle keep-alive connection closed: normal
        if (c.http->eof() == HttpReply::Result::done) {  // a body that ran to the close
            Outcome o = http_done(c, now);
            return o.next == Next::stay ? kClosed : o;
        }
    }
    return failure(ErrorKind::closed, 0);
}

Outcome Worker::http_done(Conn& c, uint64_t now) {
    const int code = c.http->status();
    const bool keep = c.http->keep_alive();
    c.http->reset();
    ++fig_.status[static_cast<std::size_t>(std::clamp(code, 0, kMaxCode - 1))];
    if (code < 400) return reply_done(c, now, keep);
    // The exchange worked but the request failed: an error, and the
    // connection goes on (or is reopened if the server closes it).
    unlist(c);
    --inflight_;
    count_error(ErrorKind::status, code);
    c.st = St::ready;
    c.succeeded = true;
    if (!keep) return kClosed;
    return next_request(c, now);
}

Outcome Worker::reply_done(Conn& c, uint64_t now, bool keep_alive) {
    unlist(c);
    --inflight_;
    ++fig_.requests;
    if (open_loop()) {
        fig_.latency.record(now - std::min(now, c.t_intended));
        fig_.uncorrected.record(now - c.t_sent);
    } else {
        fig_.latency.record(now - c.t_sent);
    }
    c.st = St::ready;
    c.succeeded = true;
    c.backoff = 0;
    if (!keep_alive) return kClosed;
    return next_request(c, now);
}

// Closed loop: the next request at once. Open loop: when it is due (at once
// when behind schedule, else the schedule's tick sends it).
Outcome Worker::next_request(Conn& c, uint64_t now) {
    if (!open_loop()) return send_request(c, now, now);
    const uint64_t due = next_intended(c);
    if (due <= now) return send_request(c, now, due);
    return kStay;
}

// ---- the loop ---------------------------------------------------------------

// Everything due by `now`: connects of the ramp, reconnects, timeouts and the
// open loop's sends.
void Worker::run_timers(uint64_t now) {
    // Connects go out in small batches between event waits, each stamped with
    // its own clock reading: a handshake is timed from its own connect() to
    // the moment the loop sees it done, and a long batch would add its own
    // length to every connect time in it.
    int batch = 0;
    while (next_start_ < conns_.size() && start_ + conns_[next_start_].plan.start_ns <= now &&
           batch < 32) {
        Conn& c = conns_[next_start_++];
        const uint64_t t = now_ns();
        settle(c, start_connect(c, t), t);
        ++batch;
    }
    for (std::size_t k = 1; k < timers_.size(); ++k) {
        while (timers_[k].head && timers_[k].head->deadline <= now) {
            Conn& c = *timers_[k].head;
            timers_[k].remove(&c);
            c.st = St::pending;
            ++fig_.reconnects;
            const uint64_t t = now_ns();
            settle(c, start_connect(c, t), t);
        }
    }
    while (timers_[0].head && timers_[0].head->deadline <= now) {
        Conn& c = *timers_[0].head;
        settle(c,
               c.st == St::connecting ? failure(ErrorKind::connect, ETIMEDOUT)
                                      : failure(ErrorKind::timeout, 0),
               now);
    }
    if (open_loop() && !cycle_.empty()) {
        while (tick_time(cursor_) <= now) {
            Conn& c = *cycle_[cursor_ % cycle_.size()];
            ++cursor_;
            if (c.st != St::ready) continue;  // busy: sends when its reply is in
            const uint64_t due = next_intended(c);
            if (due > now) continue;
            const uint64_t t = now_ns();
            settle(c, send_request(c, t, due), t);
        }
    }
}

// Nanoseconds until the next timer, or -1 for none.
int64_t Worker::next_wait(uint64_t now) const {
    uint64_t when = UINT64_MAX;
    if (next_start_ < conns_.size())
        when = std::min(when, start_ + conns_[next_start_].plan.start_ns);
    for (const TimerList& t : timers_)
        if (t.head) when = std::min(when, t.head->deadline);
    if (open_loop() && !cycle_.empty() && can_issue()) when = std::min(when, tick_time(cursor_));
    if (end_) when = std::min(when, end_);
    if (opts_.live) when = std::min(when, next_publish_);
    if (!warm_) when = std::min(when, measure_from_);
    if (policy_) when = std::min(when, next_epoch_);
    if (when == UINT64_MAX) return -1;
    return when <= now ? 0 : static_cast<int64_t>(when - now);
}

void Worker::publish_wait_counts() {
    WaitShared::Slot& s = wait_->slots[plan_.index];
    s.spins.store(w_spins_, std::memory_order_relaxed);
    s.hits.store(w_hits_, std::memory_order_relaxed);
}

// The second field of /proc/thread-self/schedstat: nanoseconds this thread
// has been runnable but waiting for a CPU (the file needs the kernel's
// CONFIG_SCHED_INFO; without it the watch has no contention figure).
void Worker::read_run_delay(uint64_t now) {
    next_schedstat_ = now + 10'000'000;
    std::array<char, 96> buf{};
    const ssize_t n = ::pread(schedstat_.get(), buf.data(), buf.size() - 1, 0);
    if (n <= 0) return;
    unsigned long long exec = 0, delay = 0;
    if (std::sscanf(buf.data(), "%llu %llu", &exec, &delay) != 2) return;
    WaitShared::Slot& s = wait_->slots[plan_.index];
    s.run_delay_ns.store(delay, std::memory_order_relaxed);
    s.run_delay_known.store(true, std::memory_order_relaxed);
}

// Worker 0, once an epoch: what all the workers did since the last one, to
// the policy; its new budget, to all.
void Worker::adapt(uint64_t now) {
    WaitSample sum;
    sum.workers = 0;
    for (const WaitShared::Slot& s : wait_->slots) {
        sum.spins += s.spins.load(std::memory_order_relaxed);
        sum.spin_hits += s.hits.load(std::memory_order_relaxed);
        if (s.run_delay_known.load(std::memory_order_relaxed)) {
            sum.run_delay_ns += s.run_delay_ns.load(std::memory_order_relaxed);
            ++sum.workers;
        }
    }
    if (epoch_start_ != 0) {
        WaitSample d;
        d.elapsed_ns = now - epoch_start_;
        d.spins = sum.spins - epoch_base_.spins;
        d.spin_hits = sum.spin_hits - epoch_base_.spin_hits;
        // A worker whose figure arrived only now would count its whole past:
        // the sum counts only when the same workers gave it both times.
        d.workers = sum.workers == epoch_base_.workers ? sum.workers : 0;
        d.run_delay_ns = d.workers > 0 ? sum.run_delay_ns - epoch_base_.run_delay_ns : 0;
        policy_->on_epoch(d);
        wait_->budget_ns.store(policy_->budget_ns(), std::memory_order_relaxed);
    }
    epoch_base_ = sum;
    epoch_start_ = now;
    next_epoch_ = now + policy_->epoch_ns();
}

void Worker::publish(uint64_t now) {
    std::lock_guard lock(live_mu_);
    snapshot_.requests = fig_.requests;
    snapshot_.errors = fig_.errors_total;
    snapshot_.open = open_;
    snapshot_.latency = fig_.latency;
    next_publish_ = now + 1'000'000'000;
}

bool Worker::done(uint64_t now) const {
    if (control_.stopped()) return true;
    if (end_ && now >= end_) return true;
    if (alive_ == 0) return true;
    if (plan_.follower) return control_.shares_done();
    if (plan_.quota && issued_ >= plan_.quota && inflight_ == 0) return true;
    return false;
}

void Worker::run(uint64_t start) {
    // The default timer slack (50 us) would make every timed wake-up, and so
    // every open-loop send and the --start-at instant, that much late.
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    start_ = start;
    end_ = opts_.duration_s > 0 ? start + static_cast<uint64_t>(opts_.duration_s * 1e9) : 0;
    next_publish_ = start + 1'000'000'000;
    measure_from_ = start + static_cast<uint64_t>(opts_.warmup_s * 1e9);
    warm_ = opts_.warmup_s <= 0;
    const uint64_t fixed_spin_ns = static_cast<uint64_t>(opts_.busy_poll_us * 1e3);
    std::array<epoll_event, 256> events;
    uint64_t now = now_ns();
    usage_at_start_ = thread_usage();
    if (wait_) {
        // This thread's own schedstat: opened here, in the worker's thread.
        schedstat_ = iolab::Fd(::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC));
        if (schedstat_) read_run_delay(now);
    }
    if (policy_) adapt(now);
    while (!done(now)) {
        if (!warm_ && now >= measure_from_) {
            // Warm-up over: what came before (connection setup, caches, the
            // server's first allocations) is not part of the figures. Errors
            // stay counted: a failure during warm-up still failed.
            warm_ = true;
            fig_.requests = fig_.bytes_in = fig_.bytes_out = 0;
            fig_.latency.clear();
            fig_.uncorrected.clear();
            usage_at_start_ = thread_usage();
        }
        run_timers(now);
        if (opts_.live && now >= next_publish_) publish(now);
        if (done(now)) break;
        int64_t wait = next_wait(now);
        int n = 0;
        // The budget of this wait: fixed, or the adaptive policy's current
        // arm; whether the spin found events within it is the policy's
        // second signal (it needs it when too few requests complete to
        // compare the arms' speed).
        const uint64_t spin_ns =
            wait_ ? wait_->budget_ns.load(std::memory_order_relaxed) : fixed_spin_ns;
        const bool spins = spin_ns > 0 && wait != 0;
        const uint64_t spin_end =
            now + (wait > 0 ? std::min(spin_ns, static_cast<uint64_t>(wait)) : spin_ns);
        // [lab:spin]
        // Spin, then block: look for events without sleeping (timeout 0) for
        // up to --busy-poll, and only then sleep in epoll_wait. A reply that
        // arrives while the thread is still on its CPU wakes nobody: the
        // sender's kernel finds no sleeper to wake (no try_to_wake_up, no
        // context switch on either side).
        if (spin_ns > 0 && wait != 0) {
            const uint64_t until =
                now + (wait > 0 ? std::min(spin_ns, static_cast<uint64_t>(wait)) : spin_ns);
            const timespec zero{};
            do {
                n = ::epoll_pwait2(ep_.get(), events.data(), static_cast<int>(events.size()), &zero,
                                   nullptr);
            } while (n == 0 && now_ns() < until);
            if (n == 0) wait = next_wait(now_ns());
        }
        if (n == 0) {
            timespec ts{};
            timespec* tsp = nullptr;
            if (wait >= 0) {
                ts.tv_sec = wait / 1'000'000'000;
                ts.tv_nsec = wait % 1'000'000'000;
                tsp = &ts;
            }
            n = ::epoll_pwait2(ep_.get(), events.data(), static_cast<int>(events.size()), tsp,
                               nullptr);
        }
        // [/lab:spin]
        if (spins && wait_) {
            ++w_spins_;
            if (n > 0 && now_ns() < spin_end) ++w_hits_;
        }
        if (n < 0 && errno != EINTR) {
            count_error(ErrorKind::read, errno);  // epoll itself failed: stop this worker
            break;
        }
        for (int i = 0; i < n; ++i) {
            const epoll_event& ev = events[static_cast<std::size_t>(i)];
            if (ev.data.ptr == nullptr) continue;  // the stop eventfd
            Conn& c = *static_cast<Conn*>(ev.data.ptr);
            const uint64_t t = now_ns();
            settle(c, handle(c, ev.events, t), t);
        }
        now = now_ns();
        if (wait_) {
            publish_wait_counts();
            if (schedstat_ && now >= next_schedstat_) read_run_delay(now);
            if (policy_ && now >= next_epoch_) adapt(now);
        }
    }
    const ThreadUsage used = thread_usage();
    fig_.client_cpu_ns = used.cpu_ns - usage_at_start_.cpu_ns;
    fig_.client_vcsw = used.vcsw - usage_at_start_.vcsw;
    fig_.client_ivcsw = used.ivcsw - usage_at_start_.ivcsw;
    if (policy_) {
        fig_.wait_spin_ns = policy_->spin_time_ns();
        fig_.wait_total_ns = policy_->total_time_ns();
        fig_.wait_probes = policy_->tries();
        fig_.wait_switches = policy_->switches();
        fig_.wait_contended = policy_->contended();
        fig_.wait_blind_ns = policy_->blind_time_ns();
    }
    fig_.finished_at = std::min(now, end_ ? std::max(end_, start_) : now);
    if (opts_.live) publish(now);
    // The sockets stay open until Engine::join() closes them: a reading of
    // the server (--server-pid) taken when the loops have ended still finds a
    // thread-per-connection server's threads alive, with their counts.
}

void Worker::close_all() {
    for (Conn& c : conns_)
        if (c.fd) close_socket(c);
    open_ = 0;
}

// ---- Engine -------------------------------------------------------------------

Engine::Engine(const Options& o) : opts_(o) {
    std::vector<WorkerPlan> plans = plan_workers(o);
    unsigned shares = 0;
    for (const auto& p : plans)
        if (p.quota > 0) ++shares;
    control_ = std::make_unique<RunControl>(shares);
    if (o.busy_poll_auto) wait_ = std::make_unique<WaitShared>(plans.size());
    for (auto& p : plans)
        workers_.push_back(std::make_unique<Worker>(o, std::move(p), *control_, wait_.get()));
}

Engine::~Engine() {
    request_stop();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
}

void Engine::start(uint64_t start_ns) {
    start_ns_ = std::max(start_ns, now_ns());
    for (auto& w : workers_) {
        running_.fetch_add(1);
        threads_.emplace_back([this, wp = w.get()] {
            wp->run(start_ns_);
            if (wp->has_share()) control_->share_done();
            running_.fetch_sub(1);
        });
    }
}

void Engine::request_stop() {
    control_->stop();
}

bool Engine::finished() const {
    return running_.load() == 0;
}

LiveSnapshot Engine::live() const {
    LiveSnapshot sum;
    for (const auto& w : workers_) {
        LiveSnapshot s = w->snapshot();
        sum.requests += s.requests;
        sum.errors += s.errors;
        sum.open += s.open;
        sum.latency.merge(s.latency);
    }
    return sum;
}

Results Engine::join() {
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    for (auto& w : workers_)
        w->close_all();
    Results r;
    const uint64_t measured_from = start_ns_ + static_cast<uint64_t>(opts_.warmup_s * 1e9);
    uint64_t last = measured_from;
    bool all_up = true;
    uint64_t all_up_at = start_ns_;
    for (const auto& w : workers_) {
        const Figures& f = w->figures();
        r.add(f);
        last = std::max(last, f.finished_at);
        if (w->size() > 0) {
            if (f.up < w->size())
                all_up = false;
            else
                all_up_at = std::max(all_up_at, f.all_up_at);
        }
        for (int k = 0; k < static_cast<int>(ErrorKind::count_); ++k) {
            for (int code = 0; code < kMaxCode; ++code) {
                const uint64_t n = f.errors[static_cast<std::size_t>(k * kMaxCode + code)];
                if (n == 0) continue;
                const auto kind = static_cast<ErrorKind>(k);
                auto& slot = r.errors[{error_kind_name(kind), code}];
                slot.first = error_text(kind, code, opts_.timeout_ns);
                slot.second += n;
            }
        }
        for (int code = 0; code < kMaxCode; ++code)
            if (f.status[static_cast<std::size_t>(code)])
                r.status[code] += f.status[static_cast<std::size_t>(code)];
    }
    r.duration_s = static_cast<double>(last - measured_from) / 1e9;
    r.rps = r.duration_s > 0 ? static_cast<double>(r.requests) / r.duration_s : 0;
    r.all_up_s =
        all_up && opts_.connections > 0 ? static_cast<double>(all_up_at - start_ns_) / 1e9 : -1;
    return r;
}

}  // namespace loadgen
