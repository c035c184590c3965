// --mode callbacks: one thread, libevent's loop, and each fetch an explicit
// state machine whose steps are callbacks:
//
//   start -> evdns_getaddrinfo ... on_resolved
//         -> socket + connect (EINPROGRESS) ... on_connected (EV_WRITE)
//              (an error: close, try the next address)
//         -> send the request ... on_writable (EV_WRITE, until all is sent)
//         -> recv + parse ... on_readable (EV_READ, until the parser is done)
//         -> finish: the result goes to the driver, which starts the next job.
//
// The pain is the point: the code that would read top to bottom in a blocking
// client is cut into functions at every place it would wait, the local
// variables become members, and "what happens next" is whichever callback the
// current step registered. A deadline timer runs beside every step.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <functional>
#include <map>
#include <memory>

#include "clients/fetcher/event_loop.hpp"
#include "clients/fetcher/fetcher.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"

namespace fetcher {

namespace {

class CallbackFetch {
  public:
    using Done = std::function<void(CallbackFetch*)>;

    CallbackFetch(EventLoop& loop, const Options& opts, Job job, Done done)
        : loop_(loop),
          opts_(opts),
          job_(std::move(job)),
          done_(std::move(done)),
          parser_(make_parser(opts)) {
        result_.url = job_.url.to_string();
        peer_ = job_.url.authority();
    }
    ~CallbackFetch() { release(); }
    CallbackFetch(const CallbackFetch&) = delete;
    CallbackFetch& operator=(const CallbackFetch&) = delete;

    const Job& job() const { return job_; }
    Result& result() { return result_; }

    void start() {
        start_ = Clock::now();
        deadline_ = evtimer_new(loop_.base(), on_deadline, this);
        timeval tv = to_timeval(opts_.timeout_ms());
        evtimer_add(deadline_, &tv);
        if (job_.url.scheme != "http") {
            return finish("https:// is outside this lab's scope (no TLS)");
        }
        evutil_addrinfo hints = resolve_hints();
        resolving_ = true;
        std::string port = std::to_string(job_.url.port);
        // May call on_resolved before returning (numeric hosts, /etc/hosts).
        evdns_getaddrinfo_request* req = evdns_getaddrinfo(loop_.dns(), job_.url.host.c_str(),
                                                           port.c_str(), &hints, on_resolved, this);
        if (resolving_) dns_req_ = req;
    }

  private:
    // ---- step 1: the name ----
    static void on_resolved(int err, evutil_addrinfo* res, void* arg) {
        auto* self = static_cast<CallbackFetch*>(arg);
        self->resolving_ = false;
        self->dns_req_ = nullptr;
        if (err == EVUTIL_EAI_CANCEL) {
            return self->finish("resolve " + self->job_.url.host + ": timed out");
        }
        if (err != 0) {
            if (res) evutil_freeaddrinfo(res);
            return self->finish("resolve " + self->job_.url.host + ": " + evutil_gai_strerror(err));
        }
        self->addrs_ = take_addresses(res);
        self->connect_next();
    }

    // ---- step 2: connect, one address after another ----
    void connect_next() {
        while (next_addr_ < addrs_.size()) {
            const iolab::SockAddr& a = addrs_[next_addr_++];
            where_ = a.to_string();
            fd_.reset(::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (!fd_) {
                last_error_ = iolab::sys_message("socket", where_, errno);
                continue;
            }
            if (::connect(fd_.get(), a.get(), a.len) == 0 || errno == EINPROGRESS) {
                return watch(EV_WRITE, on_connected);
            }
            last_error_ = iolab::sys_message("connect", where_, errno);
        }
        finish(last_error_.empty() ? "connect " + peer_ + ": no address" : last_error_);
    }

    static void on_connected(evutil_socket_t fd, short, void* arg) {
        auto* self = static_cast<CallbackFetch*>(arg);
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) {
            self->last_error_ = iolab::sys_message("connect", self->where_, err);
            self->unwatch();
            self->fd_.reset();
            return self->connect_next();
        }
        self->request_ = iolab::http::build_request("GET", self->job_.url, self->opts_.user_agent);
        self->watch(EV_WRITE | EV_PERSIST, on_writable);
    }

    // ---- step 3: write the request ----
    static void on_writable(evutil_socket_t fd, short, void* arg) {
        auto* self = static_cast<CallbackFetch*>(arg);
        std::string_view rest = std::string_view(self->request_).substr(self->sent_);
        ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;  // called again when writable
            return self->finish(iolab::sys_message("send", self->peer_, errno));
        }
        self->sent_ += static_cast<std::size_t>(n);
        if (self->sent_ == self->request_.size()) self->watch(EV_READ | EV_PERSIST, on_readable);
    }

    // ---- step 4: read and parse the response ----
    static void on_readable(evutil_socket_t fd, short, void* arg) {
        auto* self = static_cast<CallbackFetch*>(arg);
        std::array<char, 16384> buf;
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            return self->finish(iolab::sys_message("recv", self->peer_, errno));
        }
        if (n == 0) {
            self->parser_.feed_eof();
        } else {
            self->parser_.feed({buf.data(), static_cast<std::size_t>(n)});
        }
        if (self->parser_.failed()) {
            return self->finish("response from " + self->peer_ + ": " +
                                self->parser_.error_message());
        }
        if (self->parser_.done()) {
            take_response(self->parser_, self->result_);
            self->finish({});
        }
    }

    static void on_deadline(evutil_socket_t, short, void* arg) {
        auto* self = static_cast<CallbackFetch*>(arg);
        if (self->resolving_ && self->dns_req_) {
            // on_resolved comes (deferred) with EVUTIL_EAI_CANCEL and finishes.
            evdns_getaddrinfo_cancel(self->dns_req_);
            self->dns_req_ = nullptr;
            return;
        }
        std::string step = !self->fd_                            ? "resolve " + self->job_.url.host
                           : self->request_.empty()              ? "connect " + self->where_
                           : self->sent_ < self->request_.size() ? "send " + self->peer_
                                                                 : "recv " + self->peer_;
        self->finish(step + ": timed out");
    }

    // ---- the plumbing every step shares ----
    void watch(short what, event_callback_fn cb) {
        unwatch();
        io_ = event_new(loop_.base(), fd_.get(), what, cb, this);
        event_add(io_, nullptr);  // the deadline timer bounds every wait
    }
    void unwatch() {
        if (io_) event_free(io_);
        io_ = nullptr;
    }
    void release() {
        unwatch();
        if (deadline_) event_free(deadline_);
        deadline_ = nullptr;
        fd_.reset();
    }

    void finish(std::string error) {
        if (finished_) return;
        finished_ = true;
        release();
        result_.ms = ms_since(start_);
        if (!error.empty()) {
            result_.error = std::move(error);
            result_.status = 0;
        }
        // The driver deletes this object: let the current callback return
        // first, by handing over from a fresh zero-delay event.
        timeval zero{0, 0};
        event_base_once(
            loop_.base(), -1, EV_TIMEOUT,
            [](evutil_socket_t, short, void* arg) {
                auto* self = static_cast<CallbackFetch*>(arg);
                self->done_(self);
            },
            this, &zero);
    }

    EventLoop& loop_;
    const Options& opts_;
    Job job_;
    Done done_;
    iolab::http::ResponseParser parser_;
    Result result_;
    std::string peer_;
    std::string where_;
    Clock::time_point start_;
    event* deadline_ = nullptr;
    event* io_ = nullptr;
    evdns_getaddrinfo_request* dns_req_ = nullptr;
    bool resolving_ = false;
    std::vector<iolab::SockAddr> addrs_;
    std::size_t next_addr_ = 0;
    std::string last_error_;
    iolab::Fd fd_;
    std::string request_;
    std::size_t sent_ = 0;
    bool finished_ = false;
};

// Starts jobs while fewer than --concurrency are in flight (the semaphore of
// the callback world is a counter checked before each start).
class Driver {
  public:
    Driver(EventLoop& loop, const Options& opts, Coordinator& coord)
        : loop_(loop), opts_(opts), coord_(coord) {}

    void pump() {
        while (live_.size() < opts_.concurrency) {
            auto job = coord_.next();
            if (!job) return;
            auto f = std::make_unique<CallbackFetch>(
                loop_, opts_, std::move(*job), [this](CallbackFetch* done) { finished(done); });
            CallbackFetch* raw = f.get();
            live_.emplace(raw, std::move(f));
            raw->start();
        }
    }

  private:
    void finished(CallbackFetch* f) {
        auto it = live_.find(f);
        coord_.complete(f->job(), std::move(f->result()));
        live_.erase(it);
        pump();
        // Nothing in flight and nothing queued: done. (The loop is told to stop:
        // the resolver's idle socket could otherwise keep it waiting.)
        if (live_.empty()) event_base_loopexit(loop_.base(), nullptr);
    }

    EventLoop& loop_;
    const Options& opts_;
    Coordinator& coord_;
    std::map<CallbackFetch*, std::unique_ptr<CallbackFetch>> live_;
};

}  // namespace

void run_callbacks(const Options& opts, Coordinator& coord) {
    EventLoop loop;
    Driver driver(loop, opts, coord);
    driver.pump();
    if (coord.finished()) return;
    loop.run();  // until the driver stops it: every fetch has finished
}

}  // namespace fetcher
