// ex-fetch-callbacks — write it yourself: the callback fetcher's state machine.
//
// Usage: ex-fetch-callbacks --testd HOST:PORT [--timeout-ms MS]
//
// One thread, one epoll loop, many fetches in flight. Nobody waits in a
// system call for one fetch: each fetch is a small state machine, and the
// loop moves it one step each time epoll says its socket is ready:
//
//   start:       socket (non-blocking) + connect → EINPROGRESS: wait for
//                EPOLLOUT                                  state connecting
//   writable:    the handshake ended; SO_ERROR says how (0: connected,
//                ECONNREFUSED...: the fetch failed)        state sending
//   send:        as much of the request as the socket takes; the rest
//                when it is writable again                 state sending
//   readable:    recv → the HTTP parser, until it says the response is
//                complete (or broken)                      state receiving
//   done/failed: finish_ok() / finish_failed(): closed, counted, once
//
// Your part is start() and on_ready() below (the TODOs). The rest is given:
// the loop (epoll_wait, dispatch, per-fetch deadlines: a fetch still running
// at its deadline is failed as "timed out" by the loop), watch() for the
// interest set, counted_send(), and the check.
//
// The check fetches 13 URLs at once from http-testd: bodies of 1 B to 2 MB,
// chunked, a 404, a /delay inside the timeout and one past it, a request
// of 64 KiB to a server that reads it slowly (so that its send is short:
// the socket's send buffer is 4 KiB), and a port where nothing listens.
// Every URL must end exactly once, as its kind says (ok / http_errors /
// failed, with the right reason), with the right body. Output: one line per URL, then
//   ok=N http_errors=N failed=N urls=N short_sends=N
// and, last, `check: PASS — ...` or `check: FAIL — what is missing`.
// Exit codes: 0 PASS, 3 FAIL, 1 internal error, 2 usage.
//
// Linux notes: a non-blocking connect(2) returns -1 with EINPROGRESS while
// the handshake runs (on loopback, a refused port may also fail at once with
// ECONNREFUSED); the socket turns writable when it ends, either way, and
// getsockopt(SO_ERROR) tells which.

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/http.hpp"
#include "common/io.hpp"
#include "common/program.hpp"
#include "common/socket.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum class State { idle, connecting, sending, receiving, done };

struct Fetch {
    std::size_t index = 0;
    std::string url;
    iolab::SockAddr addr;  // where to connect
    std::string peer;      // addr as text, for messages
    std::string request;   // the bytes to send
    Clock::time_point deadline;
    iolab::Fd fd;
    State state = State::idle;
    std::size_t sent = 0;  // bytes of `request` sent so far
    iolab::http::ResponseParser parser;
    // The result, set by finish_ok / finish_failed:
    int status = 0;  // the HTTP status, 0 when it failed
    std::string body;
    std::string error;                      // why it failed
    int finishes = 0;                       // how many times it was finished (want 1)
    State state_at_deadline = State::idle;  // when the loop timed it out
};

class Fetcher {
  public:
    explicit Fetcher(std::vector<std::unique_ptr<Fetch>>& fetches) : fetches_(fetches) {
        ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep_) iolab::throw_sys("epoll_create1");
    }

    [[nodiscard]] std::size_t short_sends() const { return short_sends_; }

    // Starts every fetch, then runs the loop until each has finished (or
    // `hard_limit` passes: the check reports the ones left).
    void run(milliseconds hard_limit) {
        for (auto& f : fetches_) {
            start(*f);
            // A small send buffer, so that a long request cannot go in one send.
            if (f->fd) iolab::set_int_option(f->fd.get(), SOL_SOCKET, SO_SNDBUF, 4096, "SO_SNDBUF");
        }
        const auto hard_end = Clock::now() + hard_limit;
        epoll_event events[64];
        while (unfinished() > 0 && Clock::now() < hard_end) {
            const int n = ::epoll_wait(ep_.get(), events, 64, wait_ms());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) iolab::throw_sys("epoll_wait");
            for (int i = 0; i < n; ++i) {
                Fetch& f = *fetches_[events[i].data.u64];
                if (f.state != State::done) on_ready(f, events[i].events);
            }
            expire();
        }
    }

  private:
    // ---- given --------------------------------------------------------------

    // Puts f.fd in the loop's interest set for `events` (EPOLLIN, EPOLLOUT),
    // replacing what it watched before.
    [[maybe_unused]] void watch(Fetch& f, uint32_t events) {  // (for your code)
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = f.index;
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, f.fd.get(), &ev) == 0) return;
        if (errno != ENOENT || ::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, f.fd.get(), &ev) != 0)
            iolab::throw_sys("epoll_ctl", f.peer);
    }

    // send(2), counted: a short send is one that took less than offered.
    [[maybe_unused]] ssize_t counted_send(Fetch& f) {  // (for your code)
        const std::size_t want = f.request.size() - f.sent;
        const ssize_t n = ::send(f.fd.get(), f.request.data() + f.sent, want, MSG_NOSIGNAL);
        if (n >= 0 && static_cast<std::size_t>(n) < want) ++short_sends_;
        return n;
    }

    // The response is complete (f.parser.done()): the fetch succeeded.
    [[maybe_unused]] void finish_ok(Fetch& f) {  // (for your code)
        f.status = f.parser.response().status;
        f.body = std::move(f.parser.response().body);
        end(f);
    }

    // The fetch failed; `why` names the call, the peer and the errno text
    // (iolab::sys_message("connect", f.peer, err)) or the parser's message.
    void finish_failed(Fetch& f, std::string why) {
        f.error = std::move(why);
        end(f);
    }

    void end(Fetch& f) {
        ++f.finishes;
        if (f.fd) ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, f.fd.get(), nullptr);
        f.fd.reset();
        f.state = State::done;
    }

    std::size_t unfinished() const {
        return static_cast<std::size_t>(std::count_if(
            fetches_.begin(), fetches_.end(), [](auto& f) { return f->state != State::done; }));
    }

    // Milliseconds until the earliest deadline of a running fetch (at most 100).
    int wait_ms() const {
        auto next = Clock::now() + milliseconds(100);
        for (auto& f : fetches_)
            if (f->state != State::done) next = std::min(next, f->deadline);
        const auto ms = std::chrono::ceil<milliseconds>(next - Clock::now()).count();
        return static_cast<int>(std::max<long long>(ms, 0));
    }

    // Fails every running fetch whose deadline has passed.
    void expire() {
        const auto now = Clock::now();
        for (auto& f : fetches_)
            if (f->state != State::done && now >= f->deadline) {
                f->state_at_deadline = f->state;
                finish_failed(*f, "timed out (state " + std::string(state_name(f->state)) + ")");
            }
    }

  public:
    static const char* state_name(State s) {
        switch (s) {
            case State::idle:
                return "idle";
            case State::connecting:
                return "connecting";
            case State::sending:
                return "sending";
            case State::receiving:
                return "receiving";
            case State::done:
                return "done";
        }
        return "?";
    }

  private:
    // ---- yours ------------------------------------------------------------------

    // Opens f's socket and starts the connect, without waiting.
    void start(Fetch& f) {
        // TODO(you): the first step (LAB.md § 8. Write it yourself: a fetch as
        // a state machine). A non-blocking TCP socket (socket(...,
        // SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) into f.fd), then
        // ::connect(f.fd.get(), f.addr.get(), f.addr.len). EINPROGRESS is the
        // normal answer: state connecting, watch(f, EPOLLOUT). 0 (connected
        // at once): state sending, watch(f, EPOLLOUT). Anything else:
        // finish_failed(f, iolab::sys_message("connect", f.peer, errno)).
        (void)f;
    }

    // epoll reported f's socket ready (`events`): take the next steps.
    void on_ready(Fetch& f, uint32_t events) {
        // TODO(you): the state machine (LAB.md § 8. Write it yourself: a
        // fetch as a state machine):
        //   connecting: getsockopt(SOL_SOCKET, SO_ERROR): not 0 →
        //     finish_failed(f, sys_message("connect", f.peer, err)); else
        //     state sending and go on;
        //   sending: counted_send(f) until f.sent == f.request.size(); EAGAIN:
        //     return and wait for the next EPOLLOUT; EINTR: again; an error:
        //     finish_failed. All sent: state receiving, watch(f, EPOLLIN);
        //   receiving: recv until EAGAIN; bytes → f.parser.feed(...); 0 →
        //     f.parser.feed_eof(); f.parser.done() → finish_ok(f);
        //     f.parser.failed() → finish_failed(f, f.parser.error_message());
        //     a recv error → finish_failed.
        // Every path ends the fetch exactly once or leaves it watched.
        (void)f;
        (void)events;
    }

    std::vector<std::unique_ptr<Fetch>>& fetches_;
    iolab::Fd ep_;
    std::size_t short_sends_ = 0;
};

// ---- the check --------------------------------------------------------------------

// Byte i of http-testd's /bytes and /chunked bodies (its README).
std::string testd_bytes(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t j = i % 65521;
        s[i] = static_cast<char>((j * 31 + j / 251) & 0xFF);
    }
    return s;
}

enum class Kind { ok, http_error, failed };

// Why a fetch that should have succeeded was still running at its deadline.
std::string hint_for(State s) {
    switch (s) {
        case State::idle:
            return " (likely: start() opens no connection yet)";
        case State::connecting:
            return " (likely: a finished connect, EPOLLOUT, does not move the fetch on to sending)";
        case State::sending:
            return " (likely: the request was not sent whole: the rest of a short send is never "
                   "sent)";
        case State::receiving:
            return " (likely: the response is not read to its end, or the parser's done() is not "
                   "acted on)";
        case State::done:
            break;
    }
    return "";
}

struct Expect {
    std::string target;  // path on http-testd, or "" for the refused port
    Kind kind;
    std::string body;     // ok: the exact body
    std::string reason;   // failed: a piece of the error message
    std::size_t pad = 0;  // bytes of an extra header (a long request)
};

// A server that reads slowly: its socket's receive buffer is small and it
// waits 200 ms before reading, so a long request fills both buffers and the
// client's send() is short (or EAGAIN). It answers with the request's size.
class SlowServer {
  public:
    SlowServer() {
        listener_ = iolab::listen_tcp("127.0.0.1", 0);
        iolab::set_int_option(listener_.get(), SOL_SOCKET, SO_RCVBUF, 4096, "SO_RCVBUF");
        addr_ = iolab::local_address(listener_.get());
        thread_ = std::thread([this] { run(); });
    }
    ~SlowServer() {
        stop_ = true;
        thread_.join();
    }
    SlowServer(const SlowServer&) = delete;
    SlowServer& operator=(const SlowServer&) = delete;

    [[nodiscard]] const iolab::SockAddr& addr() const { return addr_; }
    static std::string answer(std::size_t request_bytes) {
        return "a request of " + std::to_string(request_bytes) + " bytes\n";
    }

  private:
    void run() {
        while (!stop_) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            iolab::Accepted a = iolab::accept_client(listener_.get());
            if (!a) continue;
            std::this_thread::sleep_for(milliseconds(200));
            std::string req;
            char buf[4096];
            const auto end = Clock::now() + milliseconds(5000);
            while (req.find("\r\n\r\n") == std::string::npos && Clock::now() < end && !stop_) {
                pollfd q{a.fd.get(), POLLIN, 0};
                if (::poll(&q, 1, 50) <= 0) continue;
                const ssize_t n = ::recv(a.fd.get(), buf, sizeof buf, 0);
                if (n <= 0) break;
                req.append(buf, static_cast<std::size_t>(n));
            }
            if (req.find("\r\n\r\n") == std::string::npos) continue;  // never came whole
            const std::string body = answer(req.size());
            const std::string resp =
                "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n" + body;
            (void)iolab::write_all(a.fd.get(), {resp.data(), resp.size()});
        }
    }

    iolab::Fd listener_;
    iolab::SockAddr addr_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
    std::string testd;
    int timeout_ms = 1000;
    CLI::App app{"Write it yourself: the callback fetcher's state machine (lab 08)"};
    iolab::setup_program(app, "ex-fetch-callbacks",
                         "Exit codes:\n  0  check: PASS\n  1  internal error\n  2  usage error\n"
                         "  3  check: FAIL");
    app.add_option("--testd", testd, "http-testd's HOST:PORT")->required();
    app.add_option("--timeout-ms", timeout_ms, "Each fetch's deadline")
        ->check(CLI::Range(300, 30'000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);

    return iolab::guarded_main("ex-fetch-callbacks", [&] {
        iolab::ignore_sigpipe();
        const iolab::HostPort hp = iolab::parse_host_port(testd);
        const iolab::SockAddr server = iolab::resolve(hp.host, hp.port).at(0);
        // A port where nothing listens: bound (so nobody else takes it), not listening.
        iolab::Fd closed(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        iolab::SockAddr refused = iolab::SockAddr::from_numeric("127.0.0.1", 0);
        if (::bind(closed.get(), refused.get(), refused.len) != 0) iolab::throw_sys("bind");
        refused = iolab::local_address(closed.get());

        const std::string late = "/delay/" + std::to_string(timeout_ms * 3);
        SlowServer slow;
        std::vector<Expect> want = {
            {"/bytes/1", Kind::ok, testd_bytes(1), "", 0},
            {"/bytes/1000", Kind::ok, testd_bytes(1000), "", 0},
            {"/bytes/100000", Kind::ok, testd_bytes(100000), "", 0},
            {"/bytes/2000000", Kind::ok, testd_bytes(2000000), "", 0},
            {"/chunked/50000?chunk=1000", Kind::ok, testd_bytes(50000), "", 0},
            {"/slow-reader", Kind::ok, "", "", 65536},
            {"/status/404", Kind::http_error, "", "", 0},
            {"/status/503", Kind::http_error, "", "", 0},
            {"/delay/100", Kind::ok, "delayed 100 ms\n", "", 0},
            {late, Kind::failed, "", "timed out", 0},
            {"", Kind::failed, "", "Connection refused", 0},
            {"/bytes/10", Kind::ok, testd_bytes(10), "", 0},
            {"/chunked/7", Kind::ok, testd_bytes(7), "", 0},
        };

        std::vector<std::unique_ptr<Fetch>> fetches;
        const auto start = Clock::now();
        for (std::size_t i = 0; i < want.size(); ++i) {
            auto f = std::make_unique<Fetch>();
            f->index = i;
            f->addr = want[i].target.empty() ? refused : want[i].pad > 0 ? slow.addr() : server;
            f->peer = f->addr.to_string();
            const std::string target = want[i].target.empty() ? "/" : want[i].target;
            f->url = "http://" + f->peer + target;
            f->request =
                "GET " + target + " HTTP/1.1\r\nHost: " + f->peer + "\r\nConnection: close\r\n";
            if (want[i].pad > 0) f->request += "X-Pad: " + std::string(want[i].pad, 'p') + "\r\n";
            f->request += "\r\n";
            if (want[i].pad > 0) want[i].body = SlowServer::answer(f->request.size());
            f->deadline = start + milliseconds(timeout_ms);
            fetches.push_back(std::move(f));
        }

        Fetcher fetcher(fetches);
        fetcher.run(milliseconds(timeout_ms * 2 + 2000));

        std::size_t ok = 0, http_errors = 0, failed = 0;
        std::string first_problem;
        for (std::size_t i = 0; i < want.size(); ++i) {
            const Fetch& f = *fetches[i];
            const Expect& w = want[i];
            std::string problem;
            if (f.state != State::done) {
                problem = "never finished (still " + std::string(Fetcher::state_name(f.state)) +
                          "): a path of on_ready neither ended it nor kept it watched";
            } else if (f.finishes != 1) {
                problem = "finished " + std::to_string(f.finishes) +
                          " times: every fetch must end exactly once";
            }
            if (f.state == State::done && f.finishes >= 1) {
                if (!f.error.empty())
                    ++failed;
                else if (f.status >= 400)
                    ++http_errors;
                else
                    ++ok;
            }
            if (problem.empty()) {
                if (w.kind == Kind::failed && f.error.find(w.reason) == std::string::npos)
                    problem = "want a failure naming '" + w.reason + "', got " +
                              (f.error.empty() ? "status " + std::to_string(f.status)
                                               : "'" + f.error + "'");
                else if (w.kind != Kind::failed && !f.error.empty())
                    problem = "failed: " + f.error;
                else if (w.kind == Kind::http_error && f.status < 400)
                    problem = "status " + std::to_string(f.status) + ", want 400 or more";
                else if (w.kind == Kind::ok && f.status != 200)
                    problem = "status " + std::to_string(f.status) + ", want 200";
                else if (w.kind == Kind::ok && f.body != w.body)
                    problem = "body of " + std::to_string(f.body.size()) + " bytes, want " +
                              std::to_string(w.body.size());
            }
            if (!f.error.empty())
                std::printf("%s error=\"%s\"", f.url.c_str(), f.error.c_str());
            else
                std::printf("%s status=%d bytes=%zu", f.url.c_str(), f.status, f.body.size());
            std::printf("%s%s\n", problem.empty() ? "" : " — FAIL: ", problem.c_str());
            if (!problem.empty() && first_problem.empty()) {
                first_problem = f.url + " " + problem;
                if (w.target.empty() && f.error.find("timed out") != std::string::npos)
                    first_problem +=
                        " (likely: the connect failure did not end the fetch; it "
                        "waited for its deadline)";
                else if (w.kind != Kind::failed && f.error.find("timed out") != std::string::npos &&
                         f.state_at_deadline == State::receiving && f.sent < f.request.size())
                    first_problem += " (likely: only " + std::to_string(f.sent) + " of " +
                                     std::to_string(f.request.size()) +
                                     " request bytes were sent: the rest of a short send is "
                                     "never sent)";
                else if (w.kind != Kind::failed && f.error.find("timed out") != std::string::npos)
                    first_problem += hint_for(f.state_at_deadline);
            }
        }
        std::printf("ok=%zu\nhttp_errors=%zu\nfailed=%zu\nurls=%zu\nshort_sends=%zu\n", ok,
                    http_errors, failed, want.size(), fetcher.short_sends());
        if (first_problem.empty() && fetcher.short_sends() == 0)
            first_problem =
                "no send was short, so the long request did not test the sending "
                "state (a loaded machine? run it again)";
        if (first_problem.empty()) {
            std::printf(
                "check: PASS — %zu URLs, each ended once: %zu ok, %zu http_errors, %zu "
                "failed, as they should\n",
                want.size(), ok, http_errors, failed);
            return 0;
        }
        std::printf("check: FAIL — %s\n", first_problem.c_str());
        return 3;
    });
}
