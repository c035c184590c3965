// Task<T>: a C++20 coroutine that runs on the EventLoop — asyncio's Task,
// with no library underneath.
//
// The notes' point (11.5): callbacks chop one request into handlers that share
// state through an object; a coroutine is "a function that can pause": it
// keeps its state in local variables, and where the callback version returned
// to the loop, it writes `co_await`. The compiler turns the function into a
// heap frame plus a resume point; the loop resumes it from a callback.
//
//   Task<int> answer(EventLoop& loop) { co_await sleep(loop, 10ms); co_return 42; }
//
// A Task is lazy: nothing runs until it is started — by `co_await task` (runs
// inline, the awaiter resumes when it finishes), or by start(loop) (the first
// step is a call_soon callback: the task then runs beside its creator, as
// asyncio.create_task). The Task object owns the frame. Destroying a Task
// that is suspended destroys the frame, and with it every awaiter in it:
// their destructors cancel their timers and remove their readers/writers
// (aio.hpp). That is cancellation here — simpler than asyncio's
// CancelledError, and it leaks nothing.
//
// Exceptions propagate: one thrown in a task is stored and rethrown where the
// task is awaited (or by result()).
#pragma once

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <utility>

#include "labs/06-event-loop/loop.hpp"

namespace evloop {

template <class T = void>
class Task;

namespace detail {

struct PromiseBase {
    std::coroutine_handle<> continuation;  // the coroutine that co_awaits this task
    std::function<void()> on_done;         // a hook for TaskSet / as_completed
    std::exception_ptr error;
    Handle start;  // the call_soon of start(), cancelled if the task dies first
    bool started = false;
    bool done = false;

    std::suspend_always initial_suspend() noexcept { return {}; }  // lazy
    // At the end: mark done, then jump straight into the awaiter (symmetric
    // transfer: no stack growth however long a chain of awaits is).
    // [lab:final]
    struct Final {
        bool await_ready() noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            PromiseBase& p = h.promise();
            p.done = true;
            if (p.on_done) p.on_done();  // must not destroy this frame
            return p.continuation ? p.continuation : std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };
    Final final_suspend() noexcept { return {}; }
    // [/lab:final]
    void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct Promise : PromiseBase {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <class U>
    void return_value(U&& v) {
        value.emplace(std::forward<U>(v));
    }
};

template <>
struct Promise<void> : PromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
  public:
    using promise_type = detail::Promise<T>;
    using Handle_t = std::coroutine_handle<promise_type>;

    Task() = default;
    explicit Task(Handle_t h) noexcept : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            destroy();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    ~Task() { destroy(); }

    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(h_); }
    [[nodiscard]] bool done() const noexcept { return h_ && h_.promise().done; }

    // Schedules the first step on the loop; the task then runs concurrently.
    void start(EventLoop& loop) {
        promise_type& p = h_.promise();
        if (p.started) return;
        p.started = true;
        p.start = loop.call_soon([h = h_] { h.resume(); });
    }

    // Called (inside the task's last step) when it finishes.
    void on_done(std::function<void()> fn) { h_.promise().on_done = std::move(fn); }

    // The value, or the task's exception rethrown. Only once done().
    T result() {
        if (!done()) throw std::logic_error("Task::result() before the task is done");
        return take(h_);
    }

    // co_await task: start it here if nobody has, come back when it is done.
    auto operator co_await() & noexcept { return Awaiter{h_}; }
    auto operator co_await() && noexcept { return Awaiter{h_}; }

    // For wait_for: resume `c` when the task finishes, without taking its result.
    std::coroutine_handle<> resume_when_done(std::coroutine_handle<> c) noexcept {
        promise_type& p = h_.promise();
        p.continuation = c;
        if (p.started) return std::noop_coroutine();
        p.started = true;
        return h_;
    }

  private:
    // [lab:awaiter]
    struct Awaiter {
        Handle_t h;
        bool await_ready() const noexcept { return h.promise().done; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) noexcept {
            promise_type& p = h.promise();
            p.continuation = c;
            if (p.started) return std::noop_coroutine();  // already running: wait
            p.started = true;
            return h;  // not started: run it now, on this stack
        }
        T await_resume() { return take(h); }
    };
    // [/lab:awaiter]

    static T take(Handle_t h) {
        promise_type& p = h.promise();
        if (p.error) std::rethrow_exception(p.error);
        if constexpr (!std::is_void_v<T>) return std::move(*p.value);
    }

    void destroy() noexcept {
        if (!h_) return;
        h_.promise().start.cancel();
        h_.destroy();  // runs the destructors of everything in the frame
        h_ = {};
    }

    Handle_t h_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
    return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
    return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
}  // namespace detail

// Starts `task` and runs the loop until it is done; returns its value or
// rethrows its exception (asyncio.run, roughly).
template <class T>
T run_until_complete(EventLoop& loop, Task<T>& task) {
    task.start(loop);
    loop.run_until([&] { return task.done(); });
    if (!task.done()) throw std::runtime_error("event loop stopped before the task completed");
    return task.result();
}
template <class T>
T run_until_complete(EventLoop& loop, Task<T>&& task) {
    Task<T> t = std::move(task);
    return run_until_complete(loop, t);
}

}  // namespace evloop
