// Running many tasks at once: wait_for, gather, AsCompleted, AsyncSemaphore,
// TaskSet — asyncio.wait_for / gather / as_completed / Semaphore /
// create_task, on Task<T>.
//
// Cancellation is destruction (task.hpp): wait_for destroys a task that ran
// out of time, and the awaiters in its frame give back their timers and
// descriptors.
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <stdexcept>
#include <vector>

#include "labs/06-event-loop/aio.hpp"

namespace evloop {

class TimeoutError : public std::runtime_error {
  public:
    TimeoutError() : std::runtime_error("timed out") {}
};

namespace detail {
// Resumes the awaiter when `task` finishes or when `timeout` expires,
// whichever comes first; says which.
template <class T>
class FirstOf {
  public:
    FirstOf(EventLoop& loop, Task<T>& task, Clock::duration timeout)
        : loop_(loop), task_(task), timeout_(timeout) {}
    FirstOf(const FirstOf&) = delete;
    ~FirstOf() { timer_.cancel(); }
    bool await_ready() const noexcept { return task_.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) {
        timer_ = loop_.call_later(timeout_, [this, c] {
            timed_out_ = true;
            c.resume();
        });
        return task_.resume_when_done(c);
    }
    bool await_resume() noexcept {
        timer_.cancel();
        return timed_out_;
    }

  private:
    EventLoop& loop_;
    Task<T>& task_;
    Clock::duration timeout_;
    Handle timer_;
    bool timed_out_ = false;
};
}  // namespace detail

// The task's value if it finishes within `timeout`; otherwise the task is
// destroyed (cancelled) and TimeoutError is thrown.
template <class T>
Task<T> wait_for(EventLoop& loop, Task<T> task, Clock::duration timeout) {
    const bool timed_out = co_await detail::FirstOf<T>(loop, task, timeout);
    if (timed_out) {
        task = Task<T>();  // destroy the frame: its awaiters unregister
        throw TimeoutError();
    }
    co_return co_await std::move(task);  // done: returns at once
}

// Runs every task concurrently; the results in the order of `tasks`. The
// first exception (in that order) propagates; the other tasks are then
// destroyed with this frame.
template <class T>
Task<std::vector<T>> gather(EventLoop& loop, std::vector<Task<T>> tasks) {
    for (auto& t : tasks)
        t.start(loop);
    std::vector<T> results;
    results.reserve(tasks.size());
    for (auto& t : tasks)
        results.push_back(co_await t);
    co_return results;
}
inline Task<void> gather(EventLoop& loop, std::vector<Task<void>> tasks) {
    for (auto& t : tasks)
        t.start(loop);
    for (auto& t : tasks)
        co_await t;
}

// The tasks' results in the order they finish:
//   AsCompleted<R> ac(loop, std::move(tasks));
//   while (!ac.empty()) { R r = co_await ac.next(); ... }
// Not movable: each task's done-hook points at it.
template <class T>
class AsCompleted {
  public:
    AsCompleted(EventLoop& loop, std::vector<Task<T>> tasks)
        : loop_(loop), tasks_(std::move(tasks)) {
        for (std::size_t i = 0; i < tasks_.size(); ++i) {
            tasks_[i].on_done([this, i] {
                finished_.push_back(i);
                if (waiter_ && !wake_.pending())
                    wake_ = loop_.call_soon([this] { std::exchange(waiter_, {}).resume(); });
            });
            tasks_[i].start(loop_);
        }
    }
    AsCompleted(const AsCompleted&) = delete;
    ~AsCompleted() { wake_.cancel(); }

    // Every result handed out already.
    [[nodiscard]] bool empty() const noexcept { return handed_ == tasks_.size(); }

    // The next task to finish: its value, or its exception.
    Task<T> next() {
        if (empty()) throw std::logic_error("AsCompleted::next() with nothing left");
        if (finished_.empty()) co_await Park{this};
        const std::size_t i = finished_.front();
        finished_.pop_front();
        ++handed_;
        co_return co_await std::move(tasks_[i]);  // done: returns at once
    }

  private:
    struct Park {
        AsCompleted* self;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> c) noexcept { self->waiter_ = c; }
        void await_resume() const noexcept {}
        ~Park() {
            if (self->waiter_) {  // destroyed while parked
                self->waiter_ = {};
                self->wake_.cancel();
            }
        }
    };
    EventLoop& loop_;
    std::vector<Task<T>> tasks_;
    std::deque<std::size_t> finished_;
    std::size_t handed_ = 0;
    std::coroutine_handle<> waiter_;
    Handle wake_;
};

// At most N holders at once; the others wait in FIFO order.
//   auto permit = co_await sem.acquire();   // released when `permit` dies
class AsyncSemaphore {
  public:
    AsyncSemaphore(EventLoop& loop, std::size_t n) : loop_(loop), available_(n) {}
    AsyncSemaphore(const AsyncSemaphore&) = delete;
    [[nodiscard]] std::size_t available() const noexcept { return available_; }
    [[nodiscard]] std::size_t waiting() const noexcept { return waiters_.size(); }

    class Permit {
      public:
        Permit() = default;
        explicit Permit(AsyncSemaphore* s) : s_(s) {}
        Permit(Permit&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
        Permit& operator=(Permit&& o) noexcept {
            if (this != &o) {
                if (s_) s_->release();
                s_ = std::exchange(o.s_, nullptr);
            }
            return *this;
        }
        ~Permit() {
            if (s_) s_->release();
        }

      private:
        AsyncSemaphore* s_ = nullptr;
    };

    class Acquire {
      public:
        explicit Acquire(AsyncSemaphore& s) : s_(s) {}
        Acquire(const Acquire&) = delete;
        ~Acquire();
        bool await_ready() noexcept;
        void await_suspend(std::coroutine_handle<> c);
        Permit await_resume() noexcept {
            state_ = State::taken;
            return Permit(&s_);
        }

      private:
        friend class AsyncSemaphore;
        enum class State { idle, queued, granted, taken };
        AsyncSemaphore& s_;
        State state_ = State::idle;
        std::coroutine_handle<> c_;
        Handle wake_;
        std::list<Acquire*>::iterator pos_;
    };
    Acquire acquire() { return Acquire(*this); }

    // Hands the permit to the longest waiter (resumed next round), or back.
    void release();

  private:
    EventLoop& loop_;
    std::size_t available_;
    std::list<Acquire*> waiters_;
};

inline bool AsyncSemaphore::Acquire::await_ready() noexcept {
    if (s_.available_ == 0 || !s_.waiters_.empty()) return false;
    --s_.available_;
    return true;
}
inline void AsyncSemaphore::Acquire::await_suspend(std::coroutine_handle<> c) {
    c_ = c;
    state_ = State::queued;
    pos_ = s_.waiters_.insert(s_.waiters_.end(), this);
}
inline AsyncSemaphore::Acquire::~Acquire() {
    // A task destroyed while waiting leaves the queue; one destroyed after
    // being granted (not yet resumed) passes its permit on.
    if (state_ == State::queued) s_.waiters_.erase(pos_);
    if (state_ == State::granted) {
        wake_.cancel();
        s_.release();
    }
}
inline void AsyncSemaphore::release() {
    if (waiters_.empty()) {
        ++available_;
        return;
    }
    Acquire* w = waiters_.front();
    waiters_.pop_front();
    w->state_ = Acquire::State::granted;
    w->wake_ = loop_.call_soon([c = w->c_] { c.resume(); });
}

// A bounded FIFO queue between coroutines, asyncio.Queue in C++: the work
// queue of a crawler with N workers (ex_crawl_queue.cpp).
//   co_await q.put(v)    waits while the queue is full (try_put: false instead)
//   T v = co_await q.get()   waits while it is empty
//   q.task_done()        one item taken by get() is finished
//   co_await q.join()    waits until every item ever put is finished
// join() is how a crawler knows it is done: the queue is empty AND no worker
// is still busy with an item (which could put more). A worker must therefore
// put the links it found *before* it calls task_done for the page.
// Waiting is cancellation-safe as everywhere here: a task destroyed while it
// waits leaves the queue's waiting lists, and a wake-up it had been given
// goes to the next waiter.
template <class T>
class AsyncQueue {
  public:
    AsyncQueue(EventLoop& loop, std::size_t capacity) : loop_(loop), capacity_(capacity) {
        if (capacity == 0) throw std::invalid_argument("AsyncQueue: capacity 0");
    }
    AsyncQueue(const AsyncQueue&) = delete;

    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
    [[nodiscard]] bool full() const noexcept { return items_.size() >= capacity_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    // Items put and not yet task_done (queued or being worked on).
    [[nodiscard]] std::size_t unfinished() const noexcept { return unfinished_; }
    // The most items the queue has held at once.
    [[nodiscard]] std::size_t peak() const noexcept { return peak_; }

    bool try_put(T v) {
        if (full()) return false;
        push(std::move(v));
        return true;
    }
    Task<void> put(T v) {
        while (full())
            co_await Park{*this, putters_};
        push(std::move(v));
    }
    Task<T> get() {
        while (items_.empty())
            co_await Park{*this, getters_};
        T v = std::move(items_.front());
        items_.pop_front();
        wake_one(putters_);  // room for one more
        co_return v;
    }
    void task_done() {
        if (unfinished_ == 0) throw std::logic_error("AsyncQueue::task_done() called too often");
        if (--unfinished_ == 0)
            while (!joiners_.empty())
                wake_one(joiners_);
    }
    Task<void> join() {
        while (unfinished_ > 0)
            co_await Park{*this, joiners_};
    }

  private:
    // A coroutine waiting in one of the three lists until woken; it then
    // checks its condition again (another task may have been quicker).
    struct Park {
        AsyncQueue& q;
        std::list<Park*>& list;
        typename std::list<Park*>::iterator pos{};
        std::coroutine_handle<> c{};
        Handle wake{};
        bool queued = false;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            c = h;
            pos = list.insert(list.end(), this);
            queued = true;
        }
        void await_resume() const noexcept {}
        ~Park() {
            if (queued) {
                list.erase(pos);
            } else if (wake.pending()) {  // woken, destroyed before it ran: pass it on
                wake.cancel();
                q.wake_one(list);
            }
        }
    };
    void push(T v) {
        items_.push_back(std::move(v));
        ++unfinished_;
        peak_ = std::max(peak_, items_.size());
        wake_one(getters_);
    }
    void wake_one(std::list<Park*>& list) {
        if (list.empty()) return;
        Park* p = list.front();
        list.pop_front();
        p->queued = false;
        p->wake = loop_.call_soon([c = p->c] { c.resume(); });
    }

    EventLoop& loop_;
    std::size_t capacity_;
    std::deque<T> items_;
    std::size_t unfinished_ = 0;
    std::size_t peak_ = 0;
    std::list<Park*> getters_, putters_, joiners_;
};

// Tasks started and forgotten (asyncio.create_task without keeping the
// result): each is destroyed once it finishes; the ones still running when
// the set dies are destroyed (cancelled) with it. A task's exception goes to
// `on_error` (default: rethrown from the loop, ending run_forever).
class TaskSet {
  public:
    explicit TaskSet(EventLoop& loop, std::function<void(std::exception_ptr)> on_error = {})
        : loop_(loop), on_error_(std::move(on_error)) {}
    TaskSet(const TaskSet&) = delete;
    ~TaskSet() {
        reap_.cancel();
        tasks_.clear();
    }
    void spawn(Task<void> t) {
        const uint64_t id = next_id_++;
        t.on_done([this, id] {
            finished_.push_back(id);
            // Not here: this runs inside the task's last step, which must not
            // destroy its own frame. Next round.
            if (!reap_.pending()) reap_ = loop_.call_soon([this] { reap(); });
        });
        t.start(loop_);
        tasks_.emplace(id, std::move(t));
    }
    [[nodiscard]] std::size_t size() const noexcept { return tasks_.size() - finished_.size(); }
    void clear() {
        reap_.cancel();
        finished_.clear();
        tasks_.clear();
    }

  private:
    void reap() {
        std::vector<uint64_t> ids;
        ids.swap(finished_);
        for (uint64_t id : ids) {
            auto node = tasks_.extract(id);
            try {
                node.mapped().result();
            } catch (...) {
                if (!on_error_) throw;
                on_error_(std::current_exception());
            }
        }
    }
    EventLoop& loop_;
    std::function<void(std::exception_ptr)> on_error_;
    std::map<uint64_t, Task<void>> tasks_;
    std::vector<uint64_t> finished_;
    uint64_t next_id_ = 0;
    Handle reap_;
};

}  // namespace evloop
