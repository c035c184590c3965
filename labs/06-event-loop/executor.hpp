// Executor: a fixed pool of threads for blocking work — what asyncio's
// run_in_executor hands a function to (a ThreadPoolExecutor by default).
//
// The event loop has one thread; a blocking call on it (sleep, getaddrinfo,
// a disk read, a long computation) freezes every callback and every
// coroutine. The executor runs such a call on one of its threads instead, and
// the loop goes on. It knows nothing about the loop: each job finishes by
// calling EventLoop::call_soon_threadsafe, which wakes the loop through an
// eventfd (see loop.cpp).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace evloop {

class Executor {
  public:
    // Starts `threads` workers with every signal blocked (signals belong to
    // the loop's thread and its signalfd).
    explicit Executor(std::size_t threads);
    // Lets the running jobs finish, drops the queued ones, joins the threads.
    ~Executor();
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;

    void submit(std::function<void()> job);
    [[nodiscard]] std::size_t size() const noexcept { return threads_.size(); }

  private:
    void work();

    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool closing_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace evloop
