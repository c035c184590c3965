// EventLoop: a reactor written by hand on epoll(7) — the thing asyncio's event
// loop is, in a few hundred lines.
//
// The course notes build it in two steps. First a selector and a loop:
// register a socket with a callback in `key.data`, call `selector.select()`,
// and for every ready key call `key.data(key)`. Then asyncio adds what a real
// program needs around that: callbacks to run "soon" (the next round), timers
// (`call_later`, `call_at`), blocking work sent to a thread pool
// (`run_in_executor`), futures, and stop. This file is all of that:
//
//   selector.register(fd, EVENT_READ, cb)   add_reader(fd, cb)      (epoll_ctl ADD/MOD)
//   key.data                                the callback in watches_[fd]
//   selector.select(timeout)                epoll_wait(ep, events, n, timeout_ms)
//   loop.call_soon(cb)                      call_soon(cb): FIFO ready queue
//   loop.call_later(d, cb) / call_at(t, cb) a binary heap of deadlines, steady clock
//   loop.run_in_executor(None, fn)          run_in_executor(fn) -> Future<R>
//   loop.call_soon_threadsafe(cb)           call_soon_threadsafe(cb): a queue + eventfd
//   loop.add_signal_handler(SIGINT, cb)     add_signal_handler(cb): a signalfd
//   loop.run_until_complete(fut), stop()    the same names
//
// One round of the loop is run_once() in loop.cpp: compute how long to sleep
// from the nearest timer, wait in epoll_wait, call the ready descriptors'
// callbacks, move the expired timers to the ready queue, run the ready queue.
// Everything runs on the thread that calls run_*; only call_soon_threadsafe
// (and so run_in_executor's workers) may be used from other threads.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

#include "common/fd.hpp"
#include "common/signals.hpp"
#include "labs/06-event-loop/executor.hpp"

namespace evloop {

using Clock = std::chrono::steady_clock;
using Callback = std::function<void()>;

class EventLoop;
template <class T>
class Future;

// What call_soon / call_later / call_at return: cancel() means the callback
// will not run, and what it captured is freed at once.
//
// A handle is small and copyable: the loop, a slot number and the slot's
// generation. The callback itself lives in the loop's slot table (see
// EventLoop::Slot); when it runs or is cancelled the slot's generation goes
// up and the slot is reused by a later callback, so an old handle to the same
// slot no longer matches and its cancel() does nothing. A handle must not be
// used after its loop is destroyed.
class Handle {
  public:
    Handle() = default;
    void cancel() noexcept;
    // This handle's cancel() took effect.
    [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }
    // Scheduled and neither run nor cancelled yet.
    [[nodiscard]] bool pending() const noexcept;

  private:
    friend class EventLoop;
    Handle(EventLoop* loop, uint32_t slot, uint32_t gen) : loop_(loop), slot_(slot), gen_(gen) {}
    EventLoop* loop_ = nullptr;
    uint32_t slot_ = 0;
    uint32_t gen_ = 0;
    bool cancelled_ = false;
};

class EventLoop {
  public:
    // `executor_threads`: size of the run_in_executor pool, started on first use.
    explicit EventLoop(std::size_t executor_threads = 4);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    [[nodiscard]] Clock::time_point time() const { return Clock::now(); }

    // ---- callbacks and timers ----
    Handle call_soon(Callback fn);
    Handle call_later(Clock::duration delay, Callback fn) {
        return call_at(time() + delay, std::move(fn));
    }
    Handle call_at(Clock::time_point when, Callback fn);
    // Room for n callbacks and timers at once, allocated now rather than as
    // the tables grow (a program that knows it will arm n timers).
    void reserve_timers(std::size_t n);
    // From any thread: queued under a mutex, then the loop is woken (eventfd).
    void call_soon_threadsafe(Callback fn);

    // ---- descriptors (level-triggered; one reader and one writer per fd) ----
    void add_reader(int fd, Callback fn);
    void add_writer(int fd, Callback fn);
    void remove_reader(int fd) noexcept;
    void remove_writer(int fd) noexcept;
    // Drops every registration of `fd` from the loop and the kernel. Call it
    // before closing a descriptor the loop watched (WatchedFd does).
    void forget(int fd) noexcept;
    [[nodiscard]] bool watching(int fd) const noexcept;
    // Descriptors with a reader or writer callback now (tests, leak checks).
    [[nodiscard]] std::size_t watched_count() const noexcept;

    // ---- blocking work on the thread pool ----
    // Runs fn() on a pool thread; the Future completes on the loop thread with
    // its value or its exception.
    template <class F>
    auto run_in_executor(F fn) -> Future<std::invoke_result_t<F&>>;

    // ---- signals ----
    // SIGINT/SIGTERM become readable on a signalfd watched by this loop; then
    // `on_signal` runs as a callback (default: stop()). Call it before any
    // thread is started (the signals are blocked in the calling thread).
    void add_signal_handler(Callback on_signal = {});
    [[nodiscard]] int last_signal() const noexcept;

    // ---- running ----
    void run_once();  // one round: see loop.cpp
    void run_forever();
    void run_until(const std::function<bool()>& done);
    template <class T>
    T run_until_complete(Future<T> f);
    // Ends run_forever / run_until after the current round.
    void stop() noexcept { stopping_ = true; }
    [[nodiscard]] uint64_t rounds() const noexcept { return rounds_; }
    [[nodiscard]] std::size_t timers_pending() const noexcept { return timers_.size(); }

  private:
    friend class Handle;
    struct Watch {
        Callback reader;
        Callback writer;
        uint32_t in_kernel = 0;  // the event mask epoll holds for this fd now
    };
    // The slot table: every callback queued by call_soon or call_at waits in
    // a slot until it runs or is cancelled. Freed slots go on a free list and
    // are reused, so a warm loop allocates nothing per timer (a std::function
    // keeps a small capture, such as a pointer or two, inside itself).
    struct Slot {
        Callback fn;
        uint32_t gen = 0;    // +1 each time the slot is freed: old handles stop matching
        uint32_t seq = 0;    // when `timer`: the seq of its heap entry
        bool timer = false;  // its entry is in the timer heap
    };
    // What the ready queue and the heap hold: which slot, and which use of it.
    struct Ref {
        uint32_t slot;
        uint32_t gen;
    };
    // A heap entry is 16 bytes, stored by value: the deadline, the scheduling
    // order (ties between equal deadlines) and the slot of the callback. No
    // pointer to chase while the heap is reordered, four entries per cache
    // line. The entry is still armed if its slot is a timer with the same seq
    // (a cancelled timer's slot was freed, and maybe reused since).
    struct Timer {
        Clock::time_point when;
        uint32_t seq;
        uint32_t slot;
    };
    // The heap keeps the earliest (when, seq) on top. A function object, not
    // a function pointer, so that std::push_heap/pop_heap inline it. seq
    // wraps after 2^32 timers: compared as a difference, equal deadlines keep
    // their order as long as they were scheduled fewer than 2^31 timers apart.
    struct Later {
        bool operator()(const Timer& a, const Timer& b) const noexcept {
            return a.when != b.when ? a.when > b.when : static_cast<int32_t>(a.seq - b.seq) > 0;
        }
    };
    static constexpr Later later{};

    Ref take_slot(Callback fn, bool timer);
    void free_slot(uint32_t slot) noexcept;
    [[nodiscard]] bool live(Ref r) const noexcept {
        return r.slot < slots_.size() && slots_[r.slot].gen == r.gen;
    }
    [[nodiscard]] bool armed(const Timer& t) const noexcept {
        return slots_[t.slot].timer && slots_[t.slot].seq == t.seq;
    }
    bool cancel(Ref r) noexcept;
    int timeout_ms() const;
    void dispatch(const epoll_event& ev);
    void expire_timers();
    void run_ready();
    int sync_kernel(int fd) noexcept;
    Watch& watch_of(int fd);
    void timer_cancelled() noexcept;
    void drain_threadsafe();
    Executor& executor();

    iolab::Fd ep_;                // the epoll instance: the kernel-side interest set
    iolab::Fd wake_;              // eventfd: other threads write 1 to wake epoll_wait
    std::vector<Watch> watches_;  // indexed by descriptor number
    std::vector<epoll_event> events_;
    std::vector<Slot> slots_;
    std::vector<uint32_t> free_slots_;  // indexes into slots_, reused last-freed first
    std::deque<Ref> ready_;             // call_soon's FIFO
    std::vector<Timer> timers_;         // a binary heap (std::push_heap)
    uint32_t timer_seq_ = 0;
    std::size_t cancelled_timers_ = 0;
    std::mutex threadsafe_mu_;
    std::vector<Callback> threadsafe_;  // filled by other threads
    bool wake_pending_ = false;         // guarded by threadsafe_mu_: one write per batch
    std::optional<iolab::StopSignals> signals_;
    Callback on_signal_;
    bool stopping_ = false;
    uint64_t rounds_ = 0;
    std::size_t executor_threads_;
    std::unique_ptr<Executor> executor_;  // last: its threads are joined first
};

// A descriptor the loop may watch: closing it drops its registrations first,
// so a later socket that gets the same number starts clean.
class WatchedFd {
  public:
    WatchedFd() = default;
    WatchedFd(EventLoop& loop, iolab::Fd fd) : loop_(&loop), fd_(std::move(fd)) {}
    WatchedFd(WatchedFd&&) noexcept = default;
    WatchedFd& operator=(WatchedFd&& o) noexcept {
        if (this != &o) {
            close();
            loop_ = o.loop_;
            fd_ = std::move(o.fd_);
        }
        return *this;
    }
    ~WatchedFd() { close(); }
    [[nodiscard]] int get() const noexcept { return fd_.get(); }
    explicit operator bool() const noexcept { return fd_.valid(); }
    void close() noexcept {
        if (fd_ && loop_) loop_->forget(fd_.get());
        fd_.reset();
    }

  private:
    EventLoop* loop_ = nullptr;
    iolab::Fd fd_;
};

}  // namespace evloop

#include "labs/06-event-loop/future.hpp"
