// The engine: one epoll loop per worker thread over non-blocking sockets.
//
// Each worker owns its connections, its buffers and its counters; nothing is
// shared on the hot path, so no lock is taken and nothing is allocated per
// request (the HTTP mode's parser keeps its buffers between responses). The
// sockets are registered once, edge-triggered, for reading and writing: a
// request is written the moment the previous reply ends, without an
// epoll_ctl per request.
//
// Timers need no heap either: every deadline of one kind is "now + a fixed
// delay", so the connections waiting for one form a list already sorted by
// deadline (append at the tail, expire from the head). The open loop's
// schedule is a fixed cycle over the connections: connection i of n sends at
// t0 + (k*n + i) * tick, tick = n / per-thread rate.
#include "clients/loadgen/engine.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <thread>

#include "clients/loadgen/http_reply.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"

namespace loadgen {

uint64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
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

uint64_t Results::error_total() const {
    uint64_t n = 0;
    for (const auto& [key, v] : errors)
        n += v.second;
    return n;
}

namespace {

constexpr int kMaxCode = 1000;  // errno values, HTTP statuses and parser errors all fit
constexpr std::size_t kReadBuf = 64 * 1024;
constexpr std::size_t kRotate = 256;  // echo payloads start at a moving offset

enum class St : uint8_t { pending, connecting, ready, busy, backoff, dead };
enum class ListId : uint8_t { none, deadline, backoff };

struct Conn {
    int fd = -1;
    St st = St::pending;
    ListId list = ListId::none;
    bool active = true;  // runs the workload (idle mode: false for the quiet ones)
    bool ever_connected = false;
    uint32_t global = 0;  // index over all connections of the run
    uint32_t slot = 0;    // open loop: position in the worker's cycle
    uint16_t target = 0;
    uint32_t url = 0;  // http: next URL of the target
    uint64_t seq = 0;  // requests sent on this connection
    uint32_t gen = 0;  // bumped at every close: callers notice a reopened socket
    uint64_t t_connect = 0;
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
    ListId id;
    explicit TimerList(ListId i) : id(i) {}
    void push(Conn* c, uint64_t deadline) {
        c->deadline = deadline;
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
        c->list = ListId::none;
    }
};

}  // namespace

struct Engine::Worker {
    const Plan& plan;
    Engine& engine;
    unsigned index;
    iolab::Fd ep;
    std::vector<Conn> conns;
    std::vector<Conn*> cycle;  // open loop: the active connections in schedule order
    std::vector<char> payload;
    std::vector<char> rbuf;

    // figures
    iolab::Histogram latency, uncorrected, connect_hist;
    uint64_t requests = 0, bytes_in = 0, bytes_out = 0, connects = 0, connect_failures = 0,
             reconnects = 0, open = 0, max_open = 0, error_count = 0;
    std::vector<uint64_t> errors;  // [kind * kMaxCode + code]
    std::vector<uint64_t> status;  // [code]
    uint64_t up = 0;               // connections that came up at least once
    uint64_t all_up_at = 0;        // when `up` reached conns.size()

    // schedule
    uint64_t start = 0, end = 0;  // end 0: no time limit
    uint64_t quota = 0, issued = 0, inflight = 0;
    bool follower = false;  // -n run without a share: ends when the others have
    uint64_t alive = 0;     // connections not dead
    std::size_t next_start = 0;
    double tick_ns = 0;
    uint64_t cursor = 0;
    TimerList deadlines{ListId::deadline}, backoffs{ListId::backoff};
    uint64_t finished_at = 0;
    uint64_t measure_from = 0;  // end of --warmup
    bool warm = true;

    // live
    mutable std::mutex live_mu;
    LiveSnapshot snapshot;
    uint64_t next_publish = 0;

    std::thread thread;

    Worker(const Plan& p, Engine& e, unsigned i) : plan(p), engine(e), index(i) {
        errors.assign(static_cast<std::size_t>(ErrorKind::count_) * kMaxCode, 0);
        status.assign(kMaxCode, 0);
    }

    [[nodiscard]] bool open_loop() const { return plan.rate > 0; }
    [[nodiscard]] bool can_issue() const { return !follower && (quota == 0 || issued < quota); }

    void count_error(ErrorKind k, int code) {
        if (code < 0 || code >= kMaxCode) code = kMaxCode - 1;
        ++errors[static_cast<std::size_t>(k) * kMaxCode + static_cast<std::size_t>(code)];
        ++error_count;
    }

    uint64_t start_time(const Conn& c) const {
        if (plan.ramp_s <= 0) return start;
        return start + static_cast<uint64_t>(plan.ramp_s * 1e9 * static_cast<double>(c.global) /
                                             static_cast<double>(plan.connections));
    }

    uint64_t tick_time(uint64_t j) const {
        return start + static_cast<uint64_t>(static_cast<double>(j) * tick_ns);
    }
    uint64_t next_intended(const Conn& c) const {
        return tick_time(c.sent_k * cycle.size() + c.slot);
    }

    void unlist(Conn& c) {
        if (c.list == ListId::deadline) deadlines.remove(&c);
        if (c.list == ListId::backoff) backoffs.remove(&c);
    }

    void close_conn(Conn& c) {
        unlist(c);
        if (c.fd >= 0) {
            ::close(c.fd);  // also leaves the epoll set
            c.fd = -1;
        }
        ++c.gen;
        if (c.st == St::ready || c.st == St::busy) --open;
        if (c.st == St::busy) --inflight;
    }

    void kill(Conn& c) {
        close_conn(c);
        c.st = St::dead;
        --alive;
    }

    // A failure: counted; a connection that was up is opened again after a
    // pause, one whose connect failed is given up (so a run against a server
    // that is not there ends instead of spinning).
    void fail(Conn& c, ErrorKind k, int code, uint64_t now) {
        count_error(k, code);
        if (k == ErrorKind::connect) {
            ++connect_failures;
            kill(c);
            return;
        }
        close_conn(c);
        c.st = St::backoff;
        backoffs.push(&c, now + plan.reconnect_delay_ns);
    }

    // The server ended the connection where that is normal (HTTP keep-alive
    // ended): open it again at once.
    void reopen(Conn& c, uint64_t now) {
        close_conn(c);
        c.st = St::pending;
        ++reconnects;
        start_connect(c, now);
    }

    void start_connect(Conn& c, uint64_t now) {
        const Target& t = plan.targets[c.target];
        c.t_connect = now;
        int fd = ::socket(t.addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            fail(c, ErrorKind::connect, errno, now);
            return;
        }
        c.fd = fd;
        if (!plan.sources.empty()) {
            // Let connect() pick the port for the whole 4-tuple: without this
            // option bind() would reserve a port per source address alone and
            // the ~28k ephemeral ports would be the limit again.
            int one = 1;
            ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            const iolab::SockAddr& src = plan.sources[c.global % plan.sources.size()];
            if (::bind(fd, src.get(), src.len) != 0) {
                fail(c, ErrorKind::connect, errno, now);
                return;
            }
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(fd, t.addr.get(), t.addr.len) != 0 && errno != EINPROGRESS) {
            fail(c, ErrorKind::connect, errno, now);
            return;
        }
        // Registered after connect(): an unconnected socket polls as HUP.
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = &c;
        if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
            fail(c, ErrorKind::connect, errno, now);
            return;
        }
        c.st = St::connecting;
        deadlines.push(&c, now + plan.timeout_ns);
    }

    void on_connected(Conn& c, uint64_t now) {
        unlist(c);
        connect_hist.record(now - c.t_connect);
        ++connects;
        ++open;
        max_open = std::max(max_open, open);
        if (!c.ever_connected) {
            c.ever_connected = true;
            if (++up == conns.size()) all_up_at = now;
        }
        c.st = St::ready;
        c.out_len = c.out_off = 0;
        if (c.http) c.http->reset();
        if (!c.active) return;  // idle: hold the connection, send nothing
        if (!open_loop()) {
            send_request(c, now, now);
            return;
        }
        // Join the schedule at the first slot not already past.
        const double period = tick_ns * static_cast<double>(cycle.size());
        const double since =
            static_cast<double>(now - start) - static_cast<double>(c.slot) * tick_ns;
        c.sent_k = since <= 0 ? 0 : static_cast<uint64_t>(std::ceil(since / period));
    }

    void send_request(Conn& c, uint64_t now, uint64_t intended) {
        if (!can_issue()) {
            c.st = St::ready;
            return;
        }
        ++issued;
        ++inflight;
        ++c.seq;
        ++c.sent_k;
        const Target& t = plan.targets[c.target];
        switch (plan.mode) {
            case Mode::echo:
            case Mode::idle:
                c.out = payload.data() + (c.seq % kRotate);
                c.out_len = plan.size;
                c.expect = plan.size;
                break;
            case Mode::raw:
                c.out = t.requests[0].data();
                c.out_len = t.requests[0].size();
                c.expect = plan.expect_bytes;
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
        deadlines.push(&c, now + plan.timeout_ns);
        do_write(c, now);
    }

    void do_write(Conn& c, uint64_t now) {
        while (c.out_off < c.out_len) {
            ssize_t n = ::send(c.fd, c.out + c.out_off, c.out_len - c.out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c.out_off += static_cast<std::size_t>(n);
                bytes_out += static_cast<uint64_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;  // EPOLLOUT edge follows
            fail(c, ErrorKind::write, n < 0 ? errno : EIO, now);
            return;
        }
    }

    void complete(Conn& c, uint64_t now, bool keep_alive = true) {
        deadlines.remove(&c);
        --inflight;
        ++requests;
        if (open_loop()) {
            latency.record(now - std::min(now, c.t_intended));
            uncorrected.record(now - c.t_sent);
        } else {
            latency.record(now - c.t_sent);
        }
        c.st = St::ready;
        if (!keep_alive) {
            reopen(c, now);
            return;
        }
        if (!open_loop()) {
            send_request(c, now, now);
        } else {
            uint64_t due = next_intended(c);
            if (due <= now) send_request(c, now, due);  // behind schedule: send at once
        }
    }

    // Bytes of a reply. Returns false when the connection was closed.
    bool on_bytes(Conn& c, const char* p, std::size_t n, uint64_t now) {
        if (c.st != St::busy) {
            fail(c, ErrorKind::protocol, 0, now);
            return false;
        }
        switch (plan.mode) {
            case Mode::echo:
            case Mode::idle: {
                if (n > c.expect - c.in_got) {
                    fail(c, ErrorKind::protocol, 0, now);
                    return false;
                }
                if (plan.verify && std::memcmp(p, c.out + c.in_got, n) != 0) {
                    fail(c, ErrorKind::verify, 0, now);
                    return false;
                }
                c.in_got += n;
                if (c.in_got == c.expect) complete(c, now);
                return true;
            }
            case Mode::raw: {
                if (plan.expect_line) {
                    const void* nl = std::memchr(p, '\n', n);
                    if (nl == nullptr) {
                        c.in_got += n;
                        return true;
                    }
                    if (static_cast<const char*>(nl) != p + n - 1) {
                        fail(c, ErrorKind::protocol, 0, now);
                        return false;
                    }
                    complete(c, now);
                    return true;
                }
                if (n > c.expect - c.in_got) {
                    fail(c, ErrorKind::protocol, 0, now);
                    return false;
                }
                c.in_got += n;
                if (c.in_got == c.expect) complete(c, now);
                return true;
            }
            case Mode::http: {
                std::size_t used = 0;
                HttpReply::Result r = c.http->feed(std::string_view(p, n), used);
                if (r == HttpReply::Result::more) return true;
                if (r == HttpReply::Result::failed) {
                    fail(c, ErrorKind::protocol, c.http->error_code(), now);
                    return false;
                }
                if (used != n) {  // one request in flight: nothing may follow
                    fail(c, ErrorKind::protocol, 0, now);
                    return false;
                }
                http_done(c, now);
                return true;
            }
        }
        return true;
    }

    void http_done(Conn& c, uint64_t now) {
        const int code = c.http->status();
        const bool keep = c.http->keep_alive();
        c.http->reset();
        ++status[static_cast<std::size_t>(std::clamp(code, 0, kMaxCode - 1))];
        if (code < 400) {
            complete(c, now, keep);
            return;
        }
        // The exchange worked but the request failed: an error, and the
        // connection goes on (or is reopened if the server closes it).
        deadlines.remove(&c);
        --inflight;
        count_error(ErrorKind::status, code);
        c.st = St::ready;
        if (!keep) {
            reopen(c, now);
        } else if (!open_loop()) {
            send_request(c, now, now);
        } else if (next_intended(c) <= now) {
            send_request(c, now, next_intended(c));
        }
    }

    void on_eof(Conn& c, uint64_t now) {
        if (plan.mode == Mode::http) {
            if (c.st != St::busy) {
                reopen(c, now);  // an idle keep-alive connection closed: normal
                return;
            }
            if (c.http->eof() == HttpReply::Result::done) {  // a body that ran to the close
                const uint32_t gen = c.gen;
                http_done(c, now);
                if (c.gen == gen) reopen(c, now);
                return;
            }
        }
        fail(c, ErrorKind::closed, 0, now);
    }

    void do_read(Conn& c, uint32_t events, uint64_t now) {
        const uint32_t gen = c.gen;
        const bool drain = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
        for (;;) {
            ssize_t n = ::recv(c.fd, rbuf.data(), rbuf.size(), 0);
            if (n > 0) {
                bytes_in += static_cast<uint64_t>(n);
                if (c.http && c.st == St::busy) c.in_got += static_cast<uint64_t>(n);
                if (!on_bytes(c, rbuf.data(), static_cast<std::size_t>(n), now) || c.gen != gen)
                    return;
                // A TCP read shorter than asked has emptied the receive queue;
                // new data raises a new edge.
                if (static_cast<std::size_t>(n) < rbuf.size() && !drain) return;
                continue;
            }
            if (n == 0) {
                on_eof(c, now);
                return;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            fail(c, ErrorKind::read, errno, now);
            return;
        }
    }

    void on_event(Conn& c, uint32_t events) {
        const uint64_t now = now_ns();
        if (c.st == St::connecting) {
            if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
            int err = 0;
            socklen_t len = sizeof err;
            if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
            if (err == 0 && (events & EPOLLHUP)) err = ECONNREFUSED;
            if (err != 0) {
                fail(c, ErrorKind::connect, err, now);
                return;
            }
            const uint32_t gen = c.gen;
            on_connected(c, now);
            if (c.gen != gen || !(events & (EPOLLIN | EPOLLRDHUP))) return;
        }
        if (c.fd < 0 || c.st == St::connecting) return;
        const uint32_t gen = c.gen;
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            do_read(c, events, now);
            if (c.gen != gen) return;
        }
        if ((events & EPOLLOUT) && c.st == St::busy && c.out_off < c.out_len) do_write(c, now);
    }

    // Everything due by `now`: connects of the ramp, reconnects, timeouts and
    // the open loop's sends.
    void run_timers(uint64_t now) {
        // Connects go out in small batches between event waits, each stamped
        // with its own clock reading: a handshake is timed from its own
        // connect() to the moment the loop sees it done, and a long batch would
        // add its own length to every connect time in it.
        int batch = 0;
        while (next_start < conns.size() && start_time(conns[next_start]) <= now && batch < 32) {
            Conn& c = conns[next_start++];
            start_connect(c, now_ns());
            ++batch;
        }
        while (backoffs.head && backoffs.head->deadline <= now) {
            Conn& c = *backoffs.head;
            backoffs.remove(&c);
            c.st = St::pending;
            ++reconnects;
            start_connect(c, now_ns());
        }
        while (deadlines.head && deadlines.head->deadline <= now) {
            Conn& c = *deadlines.head;
            if (c.st == St::connecting)
                fail(c, ErrorKind::connect, ETIMEDOUT, now);
            else
                fail(c, ErrorKind::timeout, 0, now);
        }
        if (open_loop() && !cycle.empty()) {
            while (tick_time(cursor) <= now) {
                Conn& c = *cycle[cursor % cycle.size()];
                ++cursor;
                if (c.st != St::ready) continue;  // busy: sends when its reply is in
                uint64_t due = next_intended(c);
                if (due <= now) send_request(c, now_ns(), due);
            }
        }
    }

    // Nanoseconds until the next timer, or -1 for none.
    int64_t next_wait(uint64_t now) const {
        uint64_t when = UINT64_MAX;
        if (next_start < conns.size()) when = std::min(when, start_time(conns[next_start]));
        if (backoffs.head) when = std::min(when, backoffs.head->deadline);
        if (deadlines.head) when = std::min(when, deadlines.head->deadline);
        if (open_loop() && !cycle.empty() && can_issue()) when = std::min(when, tick_time(cursor));
        if (end) when = std::min(when, end);
        if (plan.live) when = std::min(when, next_publish);
        if (!warm) when = std::min(when, measure_from);
        if (when == UINT64_MAX) return -1;
        return when <= now ? 0 : static_cast<int64_t>(when - now);
    }

    void publish(uint64_t now) {
        std::lock_guard lock(live_mu);
        snapshot.requests = requests;
        snapshot.errors = error_count;
        snapshot.open = open;
        snapshot.latency = latency;
        next_publish = now + 1'000'000'000;
    }

    [[nodiscard]] bool done(uint64_t now) const {
        if (engine.stop_.load(std::memory_order_relaxed)) return true;
        if (end && now >= end) return true;
        if (alive == 0) return true;
        if (follower) return engine.quota_workers_left_.load() == 0;
        if (quota && issued >= quota && inflight == 0) return true;
        return false;
    }

    void run() {
        // The default timer slack (50 us) would make every timed wake-up, and
        // so every open-loop send, that much late.
        ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
        std::array<epoll_event, 256> events;
        uint64_t now = now_ns();
        while (!done(now)) {
            if (!warm && now >= measure_from) {
                // Warm-up over: what came before (connection setup, caches,
                // the server's first allocations) is not part of the figures.
                // Errors stay counted: a failure during warm-up still failed.
                warm = true;
                requests = bytes_in = bytes_out = 0;
                latency.clear();
                uncorrected.clear();
            }
            run_timers(now);
            if (plan.live && now >= next_publish) publish(now);
            if (done(now)) break;
            int64_t wait = next_wait(now);
            timespec ts{};
            timespec* tsp = nullptr;
            if (wait >= 0) {
                ts.tv_sec = wait / 1'000'000'000;
                ts.tv_nsec = wait % 1'000'000'000;
                tsp = &ts;
            }
            int n = ::epoll_pwait2(ep.get(), events.data(), static_cast<int>(events.size()), tsp,
                                   nullptr);
            if (n < 0 && errno != EINTR) {
                count_error(ErrorKind::read, errno);  // epoll itself failed: stop this worker
                break;
            }
            for (int i = 0; i < n; ++i) {
                if (events[static_cast<std::size_t>(i)].data.ptr == nullptr) continue;  // stop
                on_event(*static_cast<Conn*>(events[static_cast<std::size_t>(i)].data.ptr),
                         events[static_cast<std::size_t>(i)].events);
            }
            now = now_ns();
        }
        finished_at = std::min(now, end ? std::max(end, start) : now);
        if (plan.live) publish(now);
        for (Conn& c : conns)
            if (c.fd >= 0) close_conn(c);
        open = 0;
    }
};

Engine::Engine(const Plan& plan) : plan_(plan) {
    int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) iolab::throw_sys("eventfd", "loadgen stop");
    stop_fd_ = efd;

    const unsigned T = std::max(1u, plan.threads);
    // Connection i goes to worker i % T; in idle mode the first `active` run
    // the workload, so they too spread evenly over the workers.
    std::vector<uint64_t> per(T, 0), active_per(T, 0);
    for (uint64_t i = 0; i < plan.connections; ++i) {
        ++per[i % T];
        bool active = plan.mode != Mode::idle || i < plan.active;
        if (active) ++active_per[i % T];
    }
    uint64_t total_active = 0;
    for (auto a : active_per)
        total_active += a;

    std::mt19937_64 rng(12345);
    uint64_t cum = 0;
    for (unsigned t = 0; t < T; ++t) {
        auto* w = new Worker(plan, *this, t);
        workers_.push_back(w);
        w->conns.resize(per[t]);
        w->alive = per[t];
        uint32_t slot = 0;
        for (uint64_t k = 0; k < per[t]; ++k) {
            Conn& c = w->conns[k];
            c.global = static_cast<uint32_t>(k * T + t);
            c.target = static_cast<uint16_t>(c.global % plan.targets.size());
            c.active = plan.mode != Mode::idle || c.global < plan.active;
            if (c.active && plan.rate > 0) {
                c.slot = slot++;
                w->cycle.push_back(&c);
            }
            if (plan.mode == Mode::http) c.http = std::make_unique<HttpReply>();
        }
        if (plan.requests && total_active) {
            // Exact split of -n in proportion to the active connections.
            uint64_t lo = plan.requests * cum / total_active;
            uint64_t hi = plan.requests * (cum + active_per[t]) / total_active;
            w->quota = hi - lo;
            // No share of -n (fewer requests than workers, or only idle
            // connections here): hold the connections until the others are done.
            w->follower = w->quota == 0;
            if (!w->follower) ++quota_workers_left_;
        }
        cum += active_per[t];
        if (plan.rate > 0 && active_per[t] > 0) {
            // Per connection one request every total_active / rate seconds.
            double period_ns = static_cast<double>(total_active) / plan.rate * 1e9;
            w->tick_ns = period_ns / static_cast<double>(active_per[t]);
        }
        if (plan.mode == Mode::echo || plan.mode == Mode::idle) {
            w->payload.resize(plan.size + kRotate);
            for (auto& ch : w->payload)
                ch = static_cast<char>(rng() & 0xff);
        }
        w->rbuf.resize(kReadBuf);
        w->ep.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!w->ep) iolab::throw_sys("epoll_create1", "loadgen worker");
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;
        if (::epoll_ctl(w->ep.get(), EPOLL_CTL_ADD, stop_fd_, &ev) != 0)
            iolab::throw_sys("epoll_ctl", "loadgen stop eventfd");
    }
}

Engine::~Engine() {
    request_stop();
    for (Worker* w : workers_) {
        if (w->thread.joinable()) w->thread.join();
        delete w;
    }
    ::close(stop_fd_);
}

void Engine::start() {
    start_ns_ = now_ns();
    for (Worker* w : workers_) {
        w->start = start_ns_;
        w->end =
            plan_.duration_s > 0 ? start_ns_ + static_cast<uint64_t>(plan_.duration_s * 1e9) : 0;
        w->next_publish = start_ns_ + 1'000'000'000;
        w->measure_from = start_ns_ + static_cast<uint64_t>(plan_.warmup_s * 1e9);
        w->warm = plan_.warmup_s <= 0;
        running_.fetch_add(1);
        w->thread = std::thread([this, w] {
            w->run();
            if (plan_.requests && !w->follower && quota_workers_left_.fetch_sub(1) == 1) {
                uint64_t one = 1;  // wake the followers: they end now
                [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
            }
            running_.fetch_sub(1);
        });
    }
}

void Engine::request_stop() {
    stop_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
}

bool Engine::finished() const {
    return running_.load() == 0;
}

LiveSnapshot Engine::live() const {
    LiveSnapshot sum;
    for (const Worker* w : workers_) {
        std::lock_guard lock(w->live_mu);
        sum.requests += w->snapshot.requests;
        sum.errors += w->snapshot.errors;
        sum.open += w->snapshot.open;
        sum.latency.merge(w->snapshot.latency);
    }
    return sum;
}

Results Engine::join() {
    for (Worker* w : workers_)
        if (w->thread.joinable()) w->thread.join();
    Results r;
    const uint64_t measured_from = start_ns_ + static_cast<uint64_t>(plan_.warmup_s * 1e9);
    uint64_t last = measured_from;
    bool all_up = true;
    uint64_t all_up_at = start_ns_;
    for (const Worker* w : workers_) {
        r.latency.merge(w->latency);
        r.uncorrected.merge(w->uncorrected);
        r.connect.merge(w->connect_hist);
        r.requests += w->requests;
        r.bytes_in += w->bytes_in;
        r.bytes_out += w->bytes_out;
        r.connects += w->connects;
        r.connect_failures += w->connect_failures;
        r.reconnects += w->reconnects;
        r.max_open += w->max_open;
        last = std::max(last, w->finished_at);
        if (!w->conns.empty()) {
            if (w->up < w->conns.size())
                all_up = false;
            else
                all_up_at = std::max(all_up_at, w->all_up_at);
        }
        for (int k = 0; k < static_cast<int>(ErrorKind::count_); ++k) {
            for (int code = 0; code < kMaxCode; ++code) {
                uint64_t n = w->errors[static_cast<std::size_t>(k * kMaxCode + code)];
                if (n == 0) continue;
                auto kind = static_cast<ErrorKind>(k);
                auto& slot = r.errors[{error_kind_name(kind), code}];
                slot.first = error_text(kind, code, plan_.timeout_ns);
                slot.second += n;
            }
        }
        for (int code = 0; code < kMaxCode; ++code)
            if (w->status[static_cast<std::size_t>(code)])
                r.status[code] += w->status[static_cast<std::size_t>(code)];
    }
    r.duration_s = static_cast<double>(last - measured_from) / 1e9;
    r.rps = r.duration_s > 0 ? static_cast<double>(r.requests) / r.duration_s : 0;
    r.all_up_s =
        all_up && plan_.connections > 0 ? static_cast<double>(all_up_at - start_ns_) / 1e9 : -1;
    return r;
}

}  // namespace loadgen
