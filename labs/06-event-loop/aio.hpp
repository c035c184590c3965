// The awaitables a Task uses to wait: a timer, a socket, a Future.
//
// Each one is a small object with the three calls C++ asks of an awaitable:
//   await_ready()     can we skip suspending?
//   await_suspend(c)  we are suspending: register something whose callback
//                     will resume c — a timer (call_later), a reader or writer
//                     (add_reader/add_writer), a done-callback (Future)
//   await_resume()    the value of the co_await expression
// The awaiter lives in the coroutine's frame while it is suspended, so its
// destructor is where a destroyed task gives its registration back.
//
// Sockets: wait first, then read. asyncio's sock_recv tries recv() before
// waiting; for a server, whose client has just been answered, the next
// request is almost never there yet, and trying first would cost one EAGAIN
// recv per request. Here the recv happens in the reader callback, once epoll
// said the socket is readable. A report can be stale (another reader took
// the bytes, or a descriptor number was reused in the same round): then the
// call says EAGAIN and the awaiter simply keeps waiting.
#pragma once

#include <sys/socket.h>

#include <coroutine>
#include <optional>
#include <span>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"
#include "labs/06-event-loop/task.hpp"

namespace evloop {

// ---- co_await sleep(loop, 100ms) -----------------------------------------
class Sleep {
  public:
    Sleep(EventLoop& loop, Clock::duration d) : loop_(loop), d_(d) {}
    Sleep(const Sleep&) = delete;
    ~Sleep() { timer_.cancel(); }  // destroyed while asleep: the timer goes too
    bool await_ready() const noexcept { return false; }  // sleep(0) yields one round
    void await_suspend(std::coroutine_handle<> c) {
        timer_ = loop_.call_later(d_, [c] { c.resume(); });
    }
    void await_resume() const noexcept {}

  private:
    EventLoop& loop_;
    Clock::duration d_;
    Handle timer_;
};
inline Sleep sleep(EventLoop& loop, Clock::duration d) {
    return Sleep(loop, d);
}

// ---- co_await sock_ready(loop, fd, read, write): which side is ready -------
struct Ready {
    bool readable = false;
    bool writable = false;
};
class SockReady {
  public:
    SockReady(EventLoop& loop, int fd, bool read, bool write)
        : loop_(loop), fd_(fd), read_(read), write_(write) {}
    SockReady(const SockReady&) = delete;
    ~SockReady() { unregister(); }
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> c) {
        waiting_ = true;
        if (read_) loop_.add_reader(fd_, [this, c] { fire(c, true); });
        if (write_) loop_.add_writer(fd_, [this, c] { fire(c, false); });
    }
    Ready await_resume() const noexcept { return got_; }

  private:
    void fire(std::coroutine_handle<> c, bool readable) {
        (readable ? got_.readable : got_.writable) = true;
        unregister();
        c.resume();  // may destroy *this: touch nothing after it
    }
    void unregister() noexcept {
        if (!waiting_) return;
        waiting_ = false;
        if (read_) loop_.remove_reader(fd_);
        if (write_) loop_.remove_writer(fd_);
    }
    EventLoop& loop_;
    int fd_;
    bool read_, write_;
    bool waiting_ = false;
    Ready got_;
};
inline SockReady sock_ready(EventLoop& loop, int fd, bool read, bool write) {
    return SockReady(loop, fd, read, write);
}

// ---- co_await sock_recv(loop, fd, buf) -> IoResult (ok / eof / error) ------
class SockRecv {
  public:
    SockRecv(EventLoop& loop, int fd, std::span<char> buf) : loop_(loop), fd_(fd), buf_(buf) {}
    SockRecv(const SockRecv&) = delete;
    // [lab:sock-recv]
    ~SockRecv() {
        if (waiting_) loop_.remove_reader(fd_);
    }
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> c) {
        waiting_ = true;
        loop_.add_reader(fd_, [this, c] {
            r_ = iolab::read_some(fd_, buf_);  // read(2), retried on EINTR
            if (r_.would_block()) return;      // a stale report: keep waiting
            waiting_ = false;
            loop_.remove_reader(fd_);
            c.resume();
        });
    }
    iolab::IoResult await_resume() const noexcept { return r_; }
    // [/lab:sock-recv]

  private:
    EventLoop& loop_;
    int fd_;
    std::span<char> buf_;
    bool waiting_ = false;
    iolab::IoResult r_;
};
inline SockRecv sock_recv(EventLoop& loop, int fd, std::span<char> buf) {
    return SockRecv(loop, fd, buf);
}

// ---- co_await sock_accept(loop, listen_fd) -> Accepted (fd non-blocking) ---
class SockAccept {
  public:
    SockAccept(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {}
    SockAccept(const SockAccept&) = delete;
    ~SockAccept() {
        if (waiting_) loop_.remove_reader(fd_);
    }
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> c) {
        waiting_ = true;
        loop_.add_reader(fd_, [this, c] {
            // accept4(..., SOCK_NONBLOCK): the new socket is non-blocking from birth.
            iolab::Accepted a = iolab::accept_client(fd_, SOCK_NONBLOCK);
            if (!a && (a.err == EAGAIN || a.err == EWOULDBLOCK)) return;  // stale
            got_.emplace(std::move(a));
            waiting_ = false;
            loop_.remove_reader(fd_);
            c.resume();
        });
    }
    iolab::Accepted await_resume() { return std::move(*got_); }

  private:
    EventLoop& loop_;
    int fd_;
    bool waiting_ = false;
    std::optional<iolab::Accepted> got_;
};
inline SockAccept sock_accept(EventLoop& loop, int listen_fd) {
    return SockAccept(loop, listen_fd);
}

// ---- co_await sock_sendall(loop, fd, data) -> IoResult ---------------------
// Writes as much as the socket takes, waits for writability, repeats. The
// bytes must stay alive until it finishes. bytes = how many were sent.
inline Task<iolab::IoResult> sock_sendall(EventLoop& loop, int fd, std::span<const char> data) {
    std::size_t sent = 0;
    for (;;) {
        iolab::IoResult r = iolab::write_some(fd, data.subspan(sent));  // send(MSG_NOSIGNAL)
        sent += r.bytes;
        if (!r.would_block()) {
            r.bytes = sent;
            co_return r;
        }
        co_await sock_ready(loop, fd, false, true);  // the send buffer is full
    }
}

// ---- co_await sock_connect(loop, fd, addr); throws SysError ----------------
// A non-blocking connect(2) returns EINPROGRESS at once; the socket turns
// writable when the handshake ends, and SO_ERROR says how it ended.
inline Task<void> sock_connect(EventLoop& loop, int fd, iolab::SockAddr addr) {
    if (::connect(fd, addr.get(), addr.len) == 0) co_return;
    if (errno != EINPROGRESS && errno != EINTR) iolab::throw_sys("connect", addr.to_string());
    co_await sock_ready(loop, fd, false, true);
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) iolab::throw_sys("connect", addr.to_string(), err);
}

// ---- co_await future; co_await to_thread(loop, fn) -------------------------
template <class T>
class FutureAwaiter {
  public:
    explicit FutureAwaiter(Future<T> f) : f_(std::move(f)) {}
    FutureAwaiter(const FutureAwaiter&) = delete;
    ~FutureAwaiter() {
        if (id_) f_.remove_done_callback(id_);  // destroyed while waiting
    }
    bool await_ready() const noexcept { return f_.done(); }
    void await_suspend(std::coroutine_handle<> c) {
        id_ = f_.add_done_callback([this, c] {
            id_ = 0;
            c.resume();
        });
    }
    T await_resume() { return f_.result(); }

  private:
    Future<T> f_;
    uint64_t id_ = 0;
};
template <class T>
FutureAwaiter<T> operator co_await(Future<T> f) {
    return FutureAwaiter<T>(std::move(f));
}

// The awaitable form of run_in_executor: `int n = co_await to_thread(loop, fn);`
// If the awaiting task is destroyed, fn still runs to its end on the pool
// (a thread cannot be interrupted); its result is dropped.
template <class F>
auto to_thread(EventLoop& loop, F fn) {
    return FutureAwaiter<std::invoke_result_t<F&>>(loop.run_in_executor(std::move(fn)));
}

}  // namespace evloop
