#include "common/echo_session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/workers.hpp"

namespace iolab {

namespace {

// "read: Connection reset by peer"
std::string failed(std::string_view call, int err) {
    return std::string(call) + ": " + errno_text(err);
}

}  // namespace

ClientTable::ClientTable(std::size_t out_limit, const Log& log, std::size_t slots)
    : by_fd_(slots), out_limit_(out_limit), log_(log) {}

Client& ClientTable::open(Fd fd, std::string peer) {
    const auto n = static_cast<std::size_t>(fd.get());
    if (n >= by_fd_.size()) by_fd_.resize(std::max(n + 1, 2 * by_fd_.size()));
    Client& c = by_fd_[n];
    c.fd = std::move(fd);
    c.peer = std::move(peer);
    c.out = OutQueue(out_limit_);
    c.eof = false;
    c.again = false;
    c.index = open_.size();
    open_.push_back(static_cast<int>(n));
    return c;
}

void ClientTable::close(Client& c, std::string_view why) {
    const std::size_t i = c.index;
    if (i + 1 != open_.size()) {
        open_[i] = open_.back();
        (*this)[open_[i]].index = i;
    }
    open_.pop_back();
    log_.info("disconnect " + c.peer + " (" + std::string(why) + ")");
    c.fd.reset();  // close(2)
    c.out.clear();
    if (shared_open_ != nullptr) shared_open_->give_back();
}

void ClientTable::close_all(std::string_view why) {
    while (!open_.empty())
        close((*this)[open_.back()], why);
}

EchoSession::EchoSession(ServerStats& stats, bool edge)
    : stats_(stats), edge_(edge), buf_(64 * 1024) {}

Next EchoSession::next(const Client& c) {
    Next n;
    if (c.eof && c.out.empty()) {
        n.close = "eof";  // FIN received and everything echoed
        return n;
    }
    n.read = !c.eof && !c.out.full();  // a full queue: stop reading (backpressure)
    n.write = !c.out.empty();          // only while output waits
    return n;
}

Next EchoSession::serve(Client& c, bool readable, bool writable, bool error, bool hangup) {
    Next n;
    if (error || hangup) {
        // The connection failed (a RST, a retransmission timeout): SO_ERROR
        // holds the reason. Or both directions are shut: nothing can move.
        n.close = error ? socket_error(c.fd.get()) : "reset";
        n.moved = true;
        return n;
    }
    if (writable && !c.out.empty()) {
        IoResult w = c.out.flush(c.fd.get());  // send() until done or EAGAIN
        stats_.add_out(w.bytes);
        n.moved = w.bytes > 0;
        if (w.error()) n.close = failed("write", w.err);
    }
    if (readable && n.close.empty()) n = read_and_echo(c, std::move(n));
    if (n.close.empty()) {
        const bool moved = n.moved, again = n.again;
        n = next(c);
        n.moved = moved;
        n.again = again && n.read;
    }
    n.moved = n.moved || !n.close.empty();
    return n;
}

Next EchoSession::read_and_echo(Client& c, Next n) {
    for (int reads = 1;; ++reads) {
        // Never read more than the queue could hold if the socket takes none
        // of it: nothing read is ever left over.
        // [lab:read]
        const std::size_t want = c.eof ? 0 : std::min(buf_.size(), c.out.room());
        if (want == 0) return n;
        IoResult r = read_some(c.fd.get(), std::span<char>(buf_.data(), want));
        if (r.would_block()) return n;  // the receive buffer is empty (EAGAIN)
        n.moved = true;
        if (r.eof()) {
            c.eof = true;  // FIN: no more input; the echo still goes out
            return n;
        }
        if (r.error()) {
            n.close = failed("read", r.err);
            return n;
        }
        stats_.add_in(r.bytes);
        std::size_t sent = 0;
        if (c.out.empty()) {  // nothing queued: straight to the socket
            IoResult w = write_some(c.fd.get(), std::span<const char>(buf_.data(), r.bytes));
            stats_.add_out(w.bytes);
            if (w.error()) {
                n.close = failed("write", w.err);
                return n;
            }
            sent = w.bytes;
        }
        // The rest waits in the queue, behind what is there (it fits: we
        // read at most room()).
        c.out.append(std::span<const char>(buf_.data() + sent, r.bytes - sent));
        // [/lab:read]
        // [lab:edge]
        // Level-triggered: one read per report; the socket is reported again
        // while bytes remain. Edge-triggered: on until EAGAIN or a full queue.
        if (!edge_) return n;
        if (reads == kEdgeReadBudget) {
            n.again = true;  // the budget is spent; the rest next round
            return n;
        }
        // [/lab:edge]
    }
}

std::string socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0 || err == ECONNRESET) return "reset";
    return failed("error", err);
}

}  // namespace iolab
