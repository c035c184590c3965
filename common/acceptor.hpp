// Acceptor: the accepting half every event-loop lab shares, so that a lab's
// own file shows only how its model waits.
//
// On a readiness report for the listening socket it accepts a batch of
// pending connections with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): each new
// socket is non-blocking from birth. A connection past --max-clients is
// accepted and closed at once ("refused PEER: --max-clients reached", counted
// in refused=). When accept fails with EMFILE/ENFILE the pending connections
// are shed through the reserve descriptor (see reserve_fd.hpp); when nothing
// can be shed (ENOBUFS, ENOMEM) accepting pauses for 100 ms, and the loop
// stops watching the listener meanwhile instead of spinning on it.
//
// At the stop, refuse_waiting() accepts what is still in the backlog and
// closes it ("refused PEER: server stopping", counted in refused=): every
// connection the kernel completed before the stop is in the summary, served
// or refused, and none vanishes with the listening socket. It matters with
// --workers, where each worker has a backlog of its own: when the last client
// is served, another worker's backlog may still hold earlier ones.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/reserve_fd.hpp"
#include "common/stats.hpp"

namespace iolab {

class SharedCount;  // workers.hpp

// Connections accepted per readiness report at most (level-triggered loops):
// the listener is reported again while more are waiting, and the clients
// already served get their turn in between.
inline constexpr std::size_t kAcceptBatch = 64;

// For the loops that accept on their own (echo-aio's accept thread,
// echo-uring's accept completions), the same bookkeeping as accept_batch:
//
// The peer of an accepted socket, "127.0.0.1:41234"; "fd N" when the
// connection was reset before anyone looked (getpeername fails, logged).
std::string accepted_peer(int fd, const Log& log);
// Past --max-clients (`open` clients already served): logs "refused PEER:
// --max-clients reached", counts it in refused= and returns false (the caller
// closes it). Otherwise logs "connect PEER", counts it in connections= and
// returns true.
bool admit_or_refuse(const std::string& peer, std::size_t open, std::size_t max_clients,
                     ServerStats& stats, const Log& log);

class Acceptor {
  public:
    // Takes the listening socket (O_NONBLOCK: every batch ends at EAGAIN).
    Acceptor(Fd listener, std::size_t max_clients, ServerStats& stats, const Log& log);

    [[nodiscard]] int fd() const noexcept { return listener_.get(); }
    [[nodiscard]] const std::string& where() const noexcept { return where_; }

    // Called for each connection within --max-clients, with its socket and
    // its peer ("127.0.0.1:41234"). Returns "" when the loop took it (moved
    // the Fd away, registered it): counted, logged "connect PEER". Otherwise
    // the reason it cannot: the connection is closed, counted in refused=,
    // and logged "refused PEER: REASON".
    using Admit = std::function<std::string(Fd& fd, const std::string& peer)>;

    // Accepts until the backlog is empty (EAGAIN), `batch` connections were
    // handled, or accepting pauses. `open` is how many clients are served now.
    // Returns how many connections were accepted, taken or not.
    std::size_t accept_batch(std::size_t open, std::size_t batch, const Admit& admit);

    // With worker processes: --max-clients counts the clients of all of them,
    // in `open` (a place taken for each client admitted; the ClientTable
    // gives it back at the close). accept_batch's `open` is then not used.
    void share_count(SharedCount* open) noexcept { shared_open_ = open; }

    // At the stop: accepts every connection still waiting in the backlog and
    // closes it, counted in refused= and logged "refused PEER: WHY". Returns
    // how many. Bounded: it stops at EAGAIN or after kRefuseWaitingMax.
    std::size_t refuse_waiting(std::string_view why);
    static constexpr std::size_t kRefuseWaitingMax = 1 << 16;

    // How the loop stops (false) and starts again (true) watching the
    // listener: called when accepting pauses and when the pause has run out.
    void on_watch(std::function<void(bool)> watch) { watch_ = std::move(watch); }
    [[nodiscard]] bool paused() const noexcept { return paused_; }
    // Call after every wait: ends a pause whose time has come (and calls the
    // on_watch function with true). Returns true when it did.
    bool resume_due();
    // How long the loop may sleep before resume_due(): -1 (forever) unless
    // paused. For select's timeval, paused_left().
    [[nodiscard]] int timeout_ms() const;
    [[nodiscard]] std::chrono::microseconds paused_left() const;

  private:
    ReserveFd::Outcome shed(int err);  // the EMFILE path of both accept loops

    Fd listener_;
    std::string where_;
    std::size_t max_clients_;
    SharedCount* shared_open_ = nullptr;
    ServerStats& stats_;
    const Log& log_;
    ReserveFd reserve_;
    ShedReport shed_report_;
    std::function<void(bool)> watch_;
    bool paused_ = false;
    std::chrono::steady_clock::time_point resume_at_{};
};

}  // namespace iolab
