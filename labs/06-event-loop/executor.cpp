// The thread pool behind EventLoop::run_in_executor.
#include "labs/06-event-loop/executor.hpp"

#include <pthread.h>
#include <signal.h>

namespace evloop {

Executor::Executor(std::size_t threads) {
    // A new thread inherits the creator's signal mask: block everything while
    // creating the workers, so that SIGINT/SIGTERM are never delivered to one
    // of them (where nothing reads them), then restore the mask.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (std::size_t i = 0; i < threads; ++i)
        threads_.emplace_back([this] { work(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Executor::~Executor() {
    {
        std::lock_guard lock(mu_);
        closing_ = true;
        jobs_.clear();
    }
    wake_.notify_all();
    for (auto& t : threads_)
        t.join();
}

void Executor::submit(std::function<void()> job) {
    {
        std::lock_guard lock(mu_);
        jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
}

void Executor::work() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(mu_);
            wake_.wait(lock, [&] { return closing_ || !jobs_.empty(); });
            if (closing_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();  // the job catches its own exceptions (run_in_executor does)
    }
}

}  // namespace evloop
