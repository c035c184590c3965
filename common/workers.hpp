// Worker processes: one listening socket served by N processes, the way
// nginx or Redis-cluster nodes scale past one core and past one process's
// descriptor limit (RLIMIT_NOFILE counts per process).
//
// The parent has made the listener (SO_REUSEPORT) and printed "listening on"
// once. It forks N children; child 0 serves that socket, every other child
// opens one of its own on the same port (the kernel then hashes each new
// connection to one socket of the group: an even share per worker, where a
// single shared accept queue goes mostly to whichever worker is awake). Each
// inherits the blocked SIGINT/SIGTERM with the stop signalfd, which in a child
// reads the child's own signals. The parent only waits: on SIGINT/SIGTERM it
// sends SIGTERM to every child; each child stops its loop and writes its
// counters into a pipe; the parent adds them up exactly and prints the one
// summary line. A child that dies on its own stops the others (exit 1).
//
// --max-clients counts across the workers: they share one count of the
// connections served at once (SharedCount, in memory mapped before the fork),
// so that the limit does not depend on where the kernel's hash sends each
// connection.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>

#include "common/log.hpp"
#include "common/signals.hpp"
#include "common/stats.hpp"

namespace iolab {

// A count that worker processes share: one std::atomic in a page mapped
// MAP_SHARED | MAP_ANONYMOUS, made before the fork, so that every child's
// atomic operations land in the same memory (a lock-free atomic needs no
// more than that across processes). The acceptors take a place in it for each
// client they admit; the client table gives it back at the close.
class SharedCount {
  public:
    SharedCount();  // throws SysError (mmap)
    ~SharedCount();
    SharedCount(const SharedCount&) = delete;
    SharedCount& operator=(const SharedCount&) = delete;

    // Takes a place if fewer than `limit` are taken (compare-and-swap: two
    // workers admitting at once cannot both take the last one).
    [[nodiscard]] bool try_take(std::size_t limit) noexcept;
    void give_back() noexcept;
    [[nodiscard]] std::size_t value() const noexcept;

  private:
    static_assert(std::atomic<std::size_t>::is_always_lock_free);
    std::atomic<std::size_t>* n_;
};

// Runs `serve` (one server loop, counting into the given stats, returning at
// stop; its second argument is the worker's number, 0 .. n-1) in this process
// when n == 1, in n worker processes otherwise, then
// prints the one summary line. Returns the exit code: 0, or 1 when a worker
// failed.
int serve_with_summary(unsigned n, StopSignals& stop, const Log& log,
                       const std::function<void(ServerStats&, unsigned)>& serve);

}  // namespace iolab
