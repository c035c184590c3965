// The reactor. Read run_once() first: it is the whole loop; the rest keeps
// the three queues it reads — the descriptors (epoll), the timers (a heap)
// and the ready callbacks (a FIFO) — filled.
#include "labs/06-event-loop/loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

#include "common/error.hpp"

namespace evloop {

using iolab::throw_sys;

void Handle::cancel() noexcept {
    if (loop_ && !cancelled_) cancelled_ = loop_->cancel({slot_, gen_});
}

bool Handle::pending() const noexcept {
    return loop_ && loop_->live({slot_, gen_});
}

EventLoop::EventLoop(std::size_t executor_threads) : executor_threads_(executor_threads) {
    // epoll_create1: an empty interest set, itself a descriptor.
    ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep_) throw_sys("epoll_create1");
    // eventfd: a 64-bit counter the kernel exposes as a descriptor. write(2)
    // adds to it and makes it readable; read(2) returns it and resets it to 0.
    // It is how another thread pokes a loop sleeping in epoll_wait.
    wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_) throw_sys("eventfd");
    events_.resize(256);
    add_reader(wake_.get(), [this] { drain_threadsafe(); });
}

EventLoop::~EventLoop() {
    executor_.reset();  // join the workers before the queues they post to go away
}

// ---- one round ------------------------------------------------------------

// One round of the loop — the notes' `while not stop: ready = selector.select();
// for key, mask in ready: key.data(key)`, plus timers and the ready queue:
//
//   1. how long may we sleep?  0 if callbacks are ready, else until the
//                              nearest timer, else forever (-1)
//   2. epoll_wait              sleep until a descriptor is ready or the timeout
//   3. dispatch                each ready descriptor's callback (key.data)
//   4. expire timers           deadlines <= now move to the ready queue,
//                              earliest first, equal ones in scheduling order
//   5. run the ready queue     exactly the callbacks queued now; what they
//                              schedule (call_soon, a call_later(0)) waits for
//                              the next round, so a callback that reschedules
//                              itself cannot starve the descriptors
// [lab:run-once]
void EventLoop::run_once() {
    ++rounds_;
    const int n =
        ::epoll_wait(ep_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms());
    if (n < 0 && errno != EINTR) throw_sys("epoll_wait");
    for (int i = 0; i < n; ++i)
        dispatch(events_[static_cast<std::size_t>(i)]);
    expire_timers();
    run_ready();
}

int EventLoop::timeout_ms() const {
    if (!ready_.empty() || stopping_) return 0;
    if (timers_.empty()) return -1;  // nothing scheduled: only I/O can wake us
    // epoll_wait counts milliseconds: round up, so that we never wake before
    // the deadline and spin through rounds with nothing to do.
    auto left = std::chrono::ceil<std::chrono::milliseconds>(timers_.front().when - Clock::now());
    return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, INT_MAX));
}
// [/lab:run-once]

void EventLoop::dispatch(const epoll_event& ev) {
    const int fd = ev.data.fd;
    // EPOLLERR/EPOLLHUP come whether asked for or not: wake both sides, their
    // next read or write returns the error.
    const bool in = ev.events & (EPOLLIN | EPOLLERR | EPOLLHUP);
    const bool out = ev.events & (EPOLLOUT | EPOLLERR | EPOLLHUP);
    // Copy the callback before calling it: it may remove itself, or add a
    // descriptor that makes watches_ grow.
    if (in && watch_of(fd).reader) {
        Callback cb = watch_of(fd).reader;
        cb();
    }
    if (out && watch_of(fd).writer) {
        Callback cb = watch_of(fd).writer;
        cb();
    }
    // The kernel reported something nobody waits for any more (removed lazily,
    // see remove_reader): now, and only now, tell the kernel.
    sync_kernel(fd);
}

void EventLoop::expire_timers() {
    const auto now = Clock::now();
    while (!timers_.empty() && timers_.front().when <= now) {
        std::pop_heap(timers_.begin(), timers_.end(), later);  // O(log n)
        const Timer t = timers_.back();
        timers_.pop_back();
        if (!armed(t)) {  // cancelled: its slot was freed then, skip the entry now
            --cancelled_timers_;
            continue;
        }
        Slot& s = slots_[t.slot];
        s.timer = false;
        ready_.push_back(Ref{t.slot, s.gen});
    }
}

void EventLoop::run_ready() {
    // Only the callbacks queued before this point: count them first.
    for (std::size_t k = ready_.size(); k > 0; --k) {
        const Ref r = ready_.front();
        ready_.pop_front();
        if (!live(r)) continue;  // cancelled
        // Free the slot before the call: the callback may schedule (and so
        // reuse this slot), and its own handle is no longer pending.
        Callback fn = std::move(slots_[r.slot].fn);
        free_slot(r.slot);
        fn();
    }
}

void EventLoop::run_forever() {
    while (!stopping_)
        run_once();
    stopping_ = false;
}

void EventLoop::run_until(const std::function<bool()>& done) {
    while (!done() && !stopping_)
        run_once();
    stopping_ = false;
}

// ---- callbacks and timers --------------------------------------------------

EventLoop::Ref EventLoop::take_slot(Callback fn, bool timer) {
    uint32_t i;
    if (!free_slots_.empty()) {
        i = free_slots_.back();  // the most recently freed slot: still in cache
        free_slots_.pop_back();
    } else {
        i = static_cast<uint32_t>(slots_.size());
        slots_.emplace_back();
        free_slots_.reserve(slots_.capacity());  // so that free_slot never allocates
    }
    Slot& s = slots_[i];
    s.fn = std::move(fn);
    s.timer = timer;
    return {i, s.gen};
}

void EventLoop::free_slot(uint32_t slot) noexcept {
    Slot& s = slots_[slot];
    s.fn = nullptr;  // what the callback captured is freed now
    s.timer = false;
    ++s.gen;
    free_slots_.push_back(slot);  // no allocation: see take_slot
}

Handle EventLoop::call_soon(Callback fn) {
    const Ref r = take_slot(std::move(fn), false);
    ready_.push_back(r);
    return Handle(this, r.slot, r.gen);
}

Handle EventLoop::call_at(Clock::time_point when, Callback fn) {
    const Ref r = take_slot(std::move(fn), true);
    const uint32_t seq = timer_seq_++;
    slots_[r.slot].seq = seq;
    timers_.push_back(Timer{when, seq, r.slot});
    std::push_heap(timers_.begin(), timers_.end(), later);  // O(log n)
    return Handle(this, r.slot, r.gen);
}

void EventLoop::reserve_timers(std::size_t n) {
    slots_.reserve(n);
    free_slots_.reserve(n);
    timers_.reserve(n);
}

// Cancelling frees the slot at once; an entry of it still in the ready
// queue or the heap no longer matches the slot's generation and is skipped
// when reached (removing from the middle of a heap is awkward).
bool EventLoop::cancel(Ref r) noexcept {
    if (!live(r)) return false;  // already ran, or already cancelled
    const bool timer = slots_[r.slot].timer;
    free_slot(r.slot);
    if (timer) timer_cancelled();
    return true;
}

// So that a program that arms and cancels many timeouts does not grow the
// heap forever, rebuild it once more than half of it is cancelled.
void EventLoop::timer_cancelled() noexcept {
    ++cancelled_timers_;
    if (cancelled_timers_ < 64 || cancelled_timers_ * 2 < timers_.size()) return;
    std::erase_if(timers_, [this](const Timer& t) { return !armed(t); });
    std::make_heap(timers_.begin(), timers_.end(), later);
    cancelled_timers_ = 0;
}

void EventLoop::call_soon_threadsafe(Callback fn) {
    bool wake;
    {
        std::lock_guard lock(threadsafe_mu_);
        threadsafe_.push_back(std::move(fn));
        wake = !wake_pending_;  // one eventfd write per batch is enough
        wake_pending_ = true;
    }
    if (wake) {
        const uint64_t one = 1;
        // write(2) on the eventfd: epoll_wait in the loop thread returns.
        if (::write(wake_.get(), &one, sizeof one) < 0 && errno != EAGAIN)
            throw_sys("write(eventfd)");
    }
}

// The eventfd's reader: reset the counter, then move what other threads
// queued onto the ready queue, in the order they queued it.
void EventLoop::drain_threadsafe() {
    uint64_t count;
    if (::read(wake_.get(), &count, sizeof count) < 0 && errno != EAGAIN)
        throw_sys("read(eventfd)");
    std::vector<Callback> batch;
    {
        std::lock_guard lock(threadsafe_mu_);
        batch.swap(threadsafe_);
        wake_pending_ = false;
    }
    for (auto& fn : batch)
        call_soon(std::move(fn));
}

Executor& EventLoop::executor() {
    if (!executor_) executor_ = std::make_unique<Executor>(executor_threads_);
    return *executor_;
}

// ---- descriptors ----------------------------------------------------------

EventLoop::Watch& EventLoop::watch_of(int fd) {
    if (fd < 0) throw std::invalid_argument("negative descriptor");
    if (static_cast<std::size_t>(fd) >= watches_.size())
        watches_.resize(static_cast<std::size_t>(fd) + 1);
    return watches_[static_cast<std::size_t>(fd)];
}

void EventLoop::add_reader(int fd, Callback fn) {
    Watch& w = watch_of(fd);
    w.reader = std::move(fn);
    if (w.in_kernel & EPOLLIN) return;  // still registered (see remove_reader)
    if (int err = sync_kernel(fd)) {
        w.reader = nullptr;
        throw_sys("epoll_ctl", "fd " + std::to_string(fd), err);
    }
}

void EventLoop::add_writer(int fd, Callback fn) {
    Watch& w = watch_of(fd);
    w.writer = std::move(fn);
    if (w.in_kernel & EPOLLOUT) return;
    if (int err = sync_kernel(fd)) {
        w.writer = nullptr;
        throw_sys("epoll_ctl", "fd " + std::to_string(fd), err);
    }
}

// Removing is lazy: the callback goes, the kernel registration stays. A
// coroutine that waits for the same socket again a moment later (every echo,
// every recv) then costs no epoll_ctl at all. If the kernel reports the
// descriptor while nobody waits, dispatch() trims the registration then.
void EventLoop::remove_reader(int fd) noexcept {
    if (fd >= 0 && static_cast<std::size_t>(fd) < watches_.size())
        watches_[static_cast<std::size_t>(fd)].reader = nullptr;
}

void EventLoop::remove_writer(int fd) noexcept {
    if (fd >= 0 && static_cast<std::size_t>(fd) < watches_.size())
        watches_[static_cast<std::size_t>(fd)].writer = nullptr;
}

void EventLoop::forget(int fd) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= watches_.size()) return;
    Watch& w = watches_[static_cast<std::size_t>(fd)];
    w.reader = nullptr;
    w.writer = nullptr;
    sync_kernel(fd);  // EPOLL_CTL_DEL while the number still means this socket
}

bool EventLoop::watching(int fd) const noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= watches_.size()) return false;
    const Watch& w = watches_[static_cast<std::size_t>(fd)];
    return w.reader || w.writer;
}

std::size_t EventLoop::watched_count() const noexcept {
    // The loop's own eventfd and signalfd are not counted.
    std::size_t n = 0;
    for (std::size_t fd = 0; fd < watches_.size(); ++fd) {
        const int i = static_cast<int>(fd);
        if (i == wake_.get() || (signals_ && i == signals_->fd())) continue;
        if (watches_[fd].reader || watches_[fd].writer) ++n;
    }
    return n;
}

// Makes the kernel's mask for `fd` equal to what the callbacks need:
// EPOLL_CTL_ADD the first time, MOD when it changes, DEL when nothing is left.
// Returns 0 or the errno of epoll_ctl.
int EventLoop::sync_kernel(int fd) noexcept {
    Watch& w = watches_[static_cast<std::size_t>(fd)];
    const uint32_t want = (w.reader ? EPOLLIN : 0u) | (w.writer ? EPOLLOUT : 0u);
    if (want == w.in_kernel) return 0;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = fd;
    const int op = w.in_kernel == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (::epoll_ctl(ep_.get(), op, fd, &ev) != 0) {
        // EBADF/ENOENT: the descriptor was closed behind our back (the kernel
        // dropped it from the set then). EPERM: a regular file, which epoll
        // refuses (it is always "ready").
        w.in_kernel = 0;
        return errno;
    }
    w.in_kernel = want;
    return 0;
}

// ---- signals ----------------------------------------------------------------

void EventLoop::add_signal_handler(Callback on_signal) {
    on_signal_ = on_signal ? std::move(on_signal) : Callback([this] { stop(); });
    if (!signals_) signals_.emplace();  // blocks SIGINT/SIGTERM, opens a signalfd
    add_reader(signals_->fd(), [this] {
        // read(2) the signalfd: one struct signalfd_siginfo per signal.
        if (signals_->check()) on_signal_();
    });
}

int EventLoop::last_signal() const noexcept {
    return signals_ ? signals_->signal_number() : 0;
}

}  // namespace evloop
