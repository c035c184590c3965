#include "common/acceptor.hpp"

#include <sys/socket.h>

#include <algorithm>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/socket.hpp"
#include "common/workers.hpp"

namespace iolab {

using Clock = std::chrono::steady_clock;

Acceptor::Acceptor(Fd listener, std::size_t max_clients, ServerStats& stats, const Log& log)
    : listener_(std::move(listener)),
      where_(local_address(listener_.get()).to_string()),
      max_clients_(max_clients),
      stats_(stats),
      log_(log) {}

std::size_t Acceptor::accept_batch(std::size_t open, std::size_t batch, const Admit& admit) {
    std::size_t accepted = 0;
    while (!paused_ && accepted < batch) {
        Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
        if (!a) {
            if (a.err == EAGAIN || a.err == EWOULDBLOCK) break;  // backlog empty
            if (is_resource_exhaustion(a.err)) {
                // Out of descriptors: the connection stays in the backlog and
                // the listener readable. Shed the backlog through the reserve
                // descriptor (it empties the backlog, so even an edge-triggered
                // loop hears of the next one), or pause. Then stop: another
                // accept now would only fail with EMFILE again.
                const ReserveFd::Outcome o = shed(a.err);
                accepted += o.shed;
                if (o.pause) {
                    paused_ = true;
                    resume_at_ = Clock::now() + std::chrono::milliseconds(100);
                    if (watch_) watch_(false);
                }
                break;
            }
            // An error that belongs to one connection (ENETDOWN, EPROTO...):
            // that connection is gone; take the next.
            log_.error(sys_message("accept", where_, a.err));
            continue;
        }
        ++accepted;
        const std::string peer = a.peer.to_string();
        // Across workers: take a place in the shared count, or find none.
        const bool full =
            shared_open_ != nullptr ? !shared_open_->try_take(max_clients_) : open >= max_clients_;
        if (full) {
            ++stats_.refused;  // a.fd closes as it goes out of scope
            log_.info("refused " + peer + ": --max-clients reached");
            continue;
        }
        if (std::string why = admit(a.fd, peer); !why.empty()) {
            if (shared_open_ != nullptr) shared_open_->give_back();
            ++stats_.refused;  // a.fd closes as it goes out of scope
            log_.error("refused " + peer + ": " + why);
            continue;
        }
        ++open;
        ++stats_.connections;
        log_.info("connect " + peer);
    }
    return accepted;
}

// Closes the backlog through the reserve descriptor, counts what it closed as
// refused and reports it (at most once a second).
ReserveFd::Outcome Acceptor::shed(int err) {
    const ReserveFd::Outcome o = reserve_.shed(listener_.get(), err);
    stats_.refused += o.shed;
    shed_report_.note(log_, where_, err, o.shed);
    return o;
}

std::size_t Acceptor::refuse_waiting(std::string_view why) {
    std::size_t refused = 0;
    for (std::size_t i = 0; i < kRefuseWaitingMax; ++i) {
        Accepted a = accept_client(listener_.get(), SOCK_NONBLOCK);
        if (!a) {
            if (a.err == EAGAIN || a.err == EWOULDBLOCK) break;  // backlog empty
            if (is_resource_exhaustion(a.err)) {
                // No descriptor to accept with: the reserve one closes them all.
                refused += shed(a.err).shed;
                break;
            }
            log_.error(sys_message("accept", where_, a.err));
            continue;
        }
        ++refused;
        ++stats_.refused;  // a.fd closes as it goes out of scope
        log_.info("refused " + a.peer.to_string() + ": " + std::string(why));
    }
    return refused;
}

std::string accepted_peer(int fd, const Log& log) {
    int err = 0;
    std::string peer = peer_label(fd, err);
    if (err != 0) log.info(sys_message("getpeername", peer, err));
    return peer;
}

bool admit_or_refuse(const std::string& peer, std::size_t open, std::size_t max_clients,
                     ServerStats& stats, const Log& log) {
    if (open >= max_clients) {
        ++stats.refused;
        log.info("refused " + peer + ": --max-clients reached");
        return false;
    }
    ++stats.connections;
    log.info("connect " + peer);
    return true;
}

bool Acceptor::resume_due() {
    if (!paused_ || Clock::now() < resume_at_) return false;
    paused_ = false;
    if (watch_) watch_(true);
    return true;
}

std::chrono::microseconds Acceptor::paused_left() const {
    if (!paused_) return std::chrono::microseconds(-1);
    auto left = std::chrono::ceil<std::chrono::microseconds>(resume_at_ - Clock::now());
    return std::max(left, std::chrono::microseconds(0));
}

int Acceptor::timeout_ms() const {
    if (!paused_) return -1;
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(paused_left()).count());
}

}  // namespace iolab
