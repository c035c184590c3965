// --mode coroutines: the same libevent loop as --mode callbacks, but each
// fetch is one C++20 coroutine that reads top to bottom:
//
//     co_await slots.acquire();                    // the semaphore
//     addrs = co_await resolve(loop, host, port);  // evdns, the loop keeps running
//     connect(fd, ...);  co_await writable(fd);    // EINPROGRESS, then wait
//     send(...);         co_await writable(fd);
//     recv(...);         co_await readable(fd);
//
// Each co_await suspends the coroutine and registers a one-shot libevent
// event whose callback resumes it: the state machine of the callbacks mode
// is still there, but the compiler writes it (the coroutine frame keeps the
// "local variables" across the waits). Every wait carries the request's
// deadline as its timeout.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <coroutine>
#include <deque>
#include <exception>
#include <optional>
#include <variant>

#include "clients/fetcher/event_loop.hpp"
#include "clients/fetcher/fetcher.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"

namespace fetcher {

namespace {

// ---- the coroutine types ------------------------------------------------

// Task<T>: a lazily started coroutine producing T; co_await runs it and
// resumes the awaiter when it finishes (symmetric transfer, no recursion).
template <typename T>
class Task {
  public:
    struct promise_type {
        std::optional<T> value;
        std::exception_ptr error;
        std::coroutine_handle<> continuation = std::noop_coroutine();

        Task get_return_object() {
            return Task(std::coroutine_handle<promise_type>::from_promise(*this));
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        struct Final {
            bool await_ready() noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                return h.promise().continuation;
            }
            void await_resume() noexcept {}
        };
        Final final_suspend() noexcept { return {}; }
        void return_value(T v) { value = std::move(v); }
        void unhandled_exception() { error = std::current_exception(); }
    };

    explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    Task& operator=(Task&&) = delete;
    ~Task() {
        if (h_) h_.destroy();
    }

    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiter) noexcept {
        h_.promise().continuation = awaiter;
        return h_;
    }
    T await_resume() {
        if (h_.promise().error) std::rethrow_exception(h_.promise().error);
        return std::move(*h_.promise().value);
    }

  private:
    std::coroutine_handle<promise_type> h_;
};

// Detached: a fire-and-forget coroutine that starts at once and frees its
// frame when it ends (one per job).
struct Detached {
    struct promise_type {
        Detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
};

// ---- awaitables over libevent -------------------------------------------

void resume_cb(evutil_socket_t, short what, void* arg);

// co_await wait_fd(...): suspends until fd is ready for `what`
// (EV_READ/EV_WRITE) or the deadline passes; yields true when ready.
struct FdWait {
    FdWait(event_base* b, int f, short w, Clock::time_point d)
        : base(b), fd(f), what(w), deadline(d) {}
    event_base* base;
    int fd;
    short what;
    Clock::time_point deadline;
    short fired = 0;
    std::coroutine_handle<> handle;

    // [lab:fdwait]
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        handle = h;
        timeval tv = to_timeval(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        // A one-shot event: libevent frees it after the callback.
        if (event_base_once(base, fd, what, resume_cb, this, &tv) != 0) {
            fired = EV_TIMEOUT;  // could not wait: report it as a timeout
            return false;
        }
        return true;
    }
    bool await_resume() const noexcept { return (fired & what) != 0; }
};

void resume_cb(evutil_socket_t, short what, void* arg) {
    auto* w = static_cast<FdWait*>(arg);
    w->fired = what;
    w->handle.resume();
    // [/lab:fdwait]
}

// co_await resolve(...): evdns_getaddrinfo without blocking the loop; a
// timer cancels it at the deadline.
struct Resolve {
    Resolve(EventLoop& l, std::string h, uint16_t p, Clock::time_point d)
        : loop(l), host(std::move(h)), port(p), deadline(d) {}
    EventLoop& loop;
    std::string host;
    uint16_t port;
    Clock::time_point deadline;

    int err = 0;
    std::vector<iolab::SockAddr> addrs;
    std::coroutine_handle<> handle;
    bool suspended = false;
    bool done = false;
    evdns_getaddrinfo_request* req = nullptr;
    event* timer = nullptr;

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        handle = h;
        evutil_addrinfo hints = resolve_hints();
        std::string service = std::to_string(port);
        req = evdns_getaddrinfo(loop.dns(), host.c_str(), service.c_str(), &hints, on_answer, this);
        if (done) return false;  // answered at once (numeric host, /etc/hosts)
        suspended = true;
        timer = evtimer_new(
            loop.base(),
            [](evutil_socket_t, short, void* arg) {
                auto* self = static_cast<Resolve*>(arg);
                if (!self->done && self->req) evdns_getaddrinfo_cancel(self->req);
            },
            this);
        timeval tv = to_timeval(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        evtimer_add(timer, &tv);
        return true;
    }
    static void on_answer(int e, evutil_addrinfo* res, void* arg) {
        auto* self = static_cast<Resolve*>(arg);
        self->done = true;
        self->req = nullptr;
        self->err = e;
        if (e == 0) {
            self->addrs = take_addresses(res);
        } else if (res) {
            evutil_freeaddrinfo(res);
        }
        if (self->timer) event_free(self->timer);
        self->timer = nullptr;
        if (self->suspended) self->handle.resume();
    }
    // The addresses, or the error text.
    std::variant<std::vector<iolab::SockAddr>, std::string> await_resume() {
        if (err == EVUTIL_EAI_CANCEL) return std::string("timed out");
        if (err != 0) return std::string(evutil_gai_strerror(err));
        return std::move(addrs);
    }
};

// The notes' asyncio.Semaphore: acquire() suspends while every slot is taken;
// release() hands the slot straight to the first waiter, resumed from the
// loop (not from inside release(), which would nest one coroutine in another).
class AsyncSemaphore {
  public:
    AsyncSemaphore(event_base* base, std::size_t slots) : base_(base), free_(slots) {}

    struct Acquire {
        AsyncSemaphore& sem;
        bool await_ready() const noexcept {
            if (sem.free_ == 0) return false;
            --sem.free_;  // a free slot: taken without suspending
            return true;
        }
        void await_suspend(std::coroutine_handle<> h) { sem.waiters_.push_back(h); }
        void await_resume() const noexcept {}
    };
    Acquire acquire() { return Acquire{*this}; }

    void release() {
        if (waiters_.empty()) {
            ++free_;
            return;
        }
        std::coroutine_handle<> h = waiters_.front();
        waiters_.pop_front();
        timeval zero{0, 0};
        event_base_once(
            base_, -1, EV_TIMEOUT,
            [](evutil_socket_t, short, void* arg) {
                std::coroutine_handle<>::from_address(arg).resume();
            },
            h.address(), &zero);
    }

  private:
    event_base* base_;
    std::size_t free_;
    std::deque<std::coroutine_handle<>> waiters_;
};

// ---- the fetch, in straight-line code --------------------------------------

// Kept whole (about 80 lines): connect, send, read the head, read the body,
// one after another, is what the coroutine mode exists to show; the callback
// mode spreads the same steps over five handlers.
Task<Result> fetch(EventLoop& loop, const Options& opts, iolab::http::Url url) {
    Result r;
    r.url = url.to_string();
    const auto start = Clock::now();
    const auto deadline = start + opts.timeout_ms();
    auto failed = [&](std::string error) {
        r.error = std::move(error);
        r.status = 0;
        r.ms = ms_since(start);
        return r;
    };
    if (url.scheme != "http") co_return failed("https:// is outside this lab's scope (no TLS)");
    const std::string peer = url.authority();

    auto resolved = co_await Resolve{loop, url.host, url.port, deadline};
    if (auto* why = std::get_if<std::string>(&resolved)) {
        co_return failed("resolve " + url.host + ": " + *why);
    }
    iolab::Fd fd;
    std::string last = "connect " + peer + ": no address";
    for (const iolab::SockAddr& a : std::get<0>(resolved)) {
        iolab::Fd s(::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!s) {
            last = iolab::sys_message("socket", a.to_string(), errno);
            continue;
        }
        int err = 0;
        if (::connect(s.get(), a.get(), a.len) != 0) {
            if (errno != EINPROGRESS) {
                err = errno;
            } else if (!co_await FdWait{loop.base(), s.get(), EV_WRITE, deadline}) {
                err = ETIMEDOUT;
            } else {
                socklen_t len = sizeof err;
                if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
            }
        }
        if (err == 0) {
            fd = std::move(s);
            break;
        }
        last = iolab::sys_message("connect", a.to_string(), err);
        if (err == ETIMEDOUT) break;
    }
    if (!fd) co_return failed(last);

    const std::string request = iolab::http::build_request("GET", url, opts.user_agent);
    std::size_t sent = 0;
    while (sent < request.size()) {
        ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += static_cast<std::size_t>(n);
        } else if (errno == EAGAIN) {
            if (!co_await FdWait{loop.base(), fd.get(), EV_WRITE, deadline}) {
                co_return failed("send " + peer + ": timed out");
            }
        } else if (errno != EINTR) {
            co_return failed(iolab::sys_message("send", peer, errno));
        }
    }

    auto parser = make_parser(opts);
    std::array<char, 16384> buf;
    // [lab:read]
    while (!parser.done() && !parser.failed()) {
        if (!co_await FdWait{loop.base(), fd.get(), EV_READ, deadline}) {
            co_return failed("recv " + peer + ": timed out");
        }
        ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) co_return failed(iolab::sys_message("recv", peer, errno));
        if (n == 0) {
            parser.feed_eof();
        } else {
            parser.feed({buf.data(), static_cast<std::size_t>(n)});
        }
    }
    // [/lab:read]
    if (parser.failed()) co_return failed("response from " + peer + ": " + parser.error_message());
    take_response(parser, r);
    r.ms = ms_since(start);
    co_return r;
}

struct Runner {
    EventLoop& loop;
    const Options& opts;
    Coordinator& coord;
    AsyncSemaphore slots;

    // One coroutine per job: wait for a slot, fetch, hand the result over, and
    // spawn coroutines for the jobs the result made (crawl).
    // [lab:job]
    Detached job(Job j) {
        co_await slots.acquire();
        Result r = co_await fetch(loop, opts, j.url);
        slots.release();
        coord.complete(j, std::move(r));
        spawn_queued();
        if (coord.finished()) event_base_loopexit(loop.base(), nullptr);
    }
    // [/lab:job]
    void spawn_queued() {
        while (auto j = coord.next())
            job(std::move(*j));
    }
};

}  // namespace

void run_coroutines(const Options& opts, Coordinator& coord) {
    EventLoop loop;
    Runner runner{loop, opts, coord, AsyncSemaphore(loop.base(), opts.concurrency)};
    runner.spawn_queued();
    if (coord.finished()) return;
    loop.run();  // until the last coroutine stops it
}

}  // namespace fetcher
