// Future<T>: a result that is not there yet — asyncio.Future in C++.
//
// Someone (an executor job, a callback) will call set_result or
// set_exception once; whoever waits registers a done-callback, which the loop
// runs as an ordinary call_soon callback on its own thread. run_in_executor
// returns one; run_until_complete runs the loop until one is done; a coroutine
// can co_await one (coro.hpp). A Future is a shared handle: copies refer to the
// same result. Loop thread only.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "labs/06-event-loop/loop.hpp"

namespace evloop {

template <class T>
class Future {
  public:
    using Value = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

    explicit Future(EventLoop& loop) : loop_(&loop), s_(std::make_shared<State>()) {}

    [[nodiscard]] bool done() const noexcept { return s_->done; }

    void set_result(Value v) {
        s_->value.emplace(std::move(v));
        finish();
    }
    void set_exception(std::exception_ptr e) {
        s_->error = std::move(e);
        finish();
    }

    // The value, or the exception rethrown. Only once done().
    T result() {
        if (!s_->done) throw std::logic_error("Future::result() before the future is done");
        if (s_->error) std::rethrow_exception(s_->error);
        if constexpr (!std::is_void_v<T>) return std::move(*s_->value);
    }

    // fn runs on the loop (a call_soon callback) once the future is done —
    // right away (next round) if it already is. The id removes it again.
    uint64_t add_done_callback(Callback fn) {
        const uint64_t id = s_->next_id++;
        s_->callbacks.emplace_back(id, std::move(fn));
        if (s_->done) schedule();
        return id;
    }
    void remove_done_callback(uint64_t id) noexcept {
        auto& cbs = s_->callbacks;
        for (auto it = cbs.begin(); it != cbs.end(); ++it)
            if (it->first == id) {
                cbs.erase(it);
                return;
            }
    }

  private:
    struct State {
        bool done = false;
        bool scheduled = false;
        std::optional<Value> value;
        std::exception_ptr error;
        std::vector<std::pair<uint64_t, Callback>> callbacks;
        uint64_t next_id = 1;
    };

    void finish() {
        if (s_->done) throw std::logic_error("Future completed twice");
        s_->done = true;
        if (!s_->callbacks.empty()) schedule();
    }
    // One call_soon runs the callbacks registered when it runs: one removed
    // meanwhile (its waiter was destroyed) does not run.
    void schedule() {
        if (s_->scheduled) return;
        s_->scheduled = true;
        loop_->call_soon([s = s_] {
            s->scheduled = false;
            auto cbs = std::move(s->callbacks);
            s->callbacks.clear();
            for (auto& [id, fn] : cbs)
                fn();
        });
    }

    EventLoop* loop_;
    std::shared_ptr<State> s_;
};

// ---- EventLoop templates that need Future ----------------------------------

template <class F>
auto EventLoop::run_in_executor(F fn) -> Future<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    using Value = typename Future<R>::Value;
    Future<R> fut(*this);
    auto job = std::make_shared<F>(std::move(fn));  // std::function wants copyable
    executor().submit([this, fut, job]() mutable {
        // On a pool thread: run the blocking function, catch what it throws.
        auto value = std::make_shared<std::optional<Value>>();
        std::exception_ptr error;
        try {
            if constexpr (std::is_void_v<R>) {
                (*job)();
                value->emplace();
            } else {
                value->emplace((*job)());
            }
        } catch (...) {
            error = std::current_exception();
        }
        // Back to the loop thread: the future is completed there, never here.
        call_soon_threadsafe([fut, value, error]() mutable {
            if (error)
                fut.set_exception(error);
            else
                fut.set_result(std::move(**value));
        });
    });
    return fut;
}

template <class T>
T EventLoop::run_until_complete(Future<T> f) {
    run_until([&] { return f.done(); });
    if (!f.done()) throw std::runtime_error("event loop stopped before the future completed");
    return f.result();
}

}  // namespace evloop
