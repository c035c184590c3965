// The serving half every event-loop lab shares: a Client per connection, a
// table of them indexed by descriptor, and the echo itself — flush what is
// queued, read, echo, queue the rest — which answers with what the loop must
// watch next. How a lab watches (an fd_set bit, a pollfd entry, an epoll_ctl)
// stays in the lab's own file, a backend of echo_driver.hpp.
//
// Backpressure: each Client has a bounded OutQueue (--out-limit) for the echo
// bytes the socket would not take yet. The session never reads more than the
// queue could hold, and while the queue is full it answers "do not watch for
// reading": the client's bytes wait in the kernel, its receive window closes,
// and its own write(2) blocks. Nothing is read and then dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/acceptor.hpp"
#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/out_queue.hpp"
#include "common/signals.hpp"
#include "common/stats.hpp"

namespace iolab {

// Everything a server knows about one connection.
struct Client {
    Fd fd;                  // invalid: this slot is free
    std::string peer;       // "127.0.0.1:41234", for log lines
    OutQueue out;           // echo bytes the socket did not take yet
    bool eof = false;       // the client sent FIN: finish the echo, then close
    std::size_t index = 0;  // its place in ClientTable::fds()
    bool again = false;     // on the driver's serve-again list (Next::again)
};

// The clients, in a vector indexed by descriptor number: the kernel hands out
// the lowest free number, so the vector stays dense and a ready descriptor
// finds its Client in O(1). fds() lists the open ones for loops that walk them.
class ClientTable {
  public:
    ClientTable(std::size_t out_limit, const Log& log, std::size_t slots = 1024);

    // A new client on `fd` (taken). The Client& stays valid until the next open().
    Client& open(Fd fd, std::string peer);
    Client& operator[](int fd) { return by_fd_[static_cast<std::size_t>(fd)]; }
    [[nodiscard]] bool is_open(int fd) const noexcept {
        return fd >= 0 && static_cast<std::size_t>(fd) < by_fd_.size() &&
               by_fd_[static_cast<std::size_t>(fd)].fd.valid();
    }
    [[nodiscard]] const std::vector<int>& fds() const noexcept { return open_; }
    [[nodiscard]] std::size_t size() const noexcept { return open_.size(); }

    // Logs "disconnect PEER (WHY)", closes the socket, frees the queue. In
    // fds(), the last entry moves into the closed one's place (Client::index):
    // a loop that walks fds() backwards never skips one.
    void close(Client& c, std::string_view why);
    void close_all(std::string_view why);

    // With worker processes: each close gives back the place the acceptor
    // took in the count all the workers share (Acceptor::share_count).
    void share_count(SharedCount* open) noexcept { shared_open_ = open; }

  private:
    std::vector<Client> by_fd_;
    SharedCount* shared_open_ = nullptr;
    std::vector<int> open_;
    std::size_t out_limit_;
    const Log& log_;
};

// What the loop should do with a client after serving it.
struct Next {
    bool read = false;   // watch for readability (no FIN yet, room in the queue)
    bool write = false;  // watch for writability (bytes are queued)
    std::string close;   // not empty: close the client; why ("eof", "read: ...")
    bool moved = false;  // some byte moved or the state changed
    // Edge-triggered: the read budget ran out before EAGAIN. Bytes may wait
    // that no report will announce: serve it again in the next round.
    bool again = false;
};

class EchoSession {
  public:
    // `edge`: read until EAGAIN (edge-triggered readiness, where a socket is
    // reported once per change) or for kEdgeReadBudget reads at most, so that
    // one client that never stops sending cannot hold the loop (Next::again);
    // otherwise one read per report (level).
    static constexpr int kEdgeReadBudget = 4;
    explicit EchoSession(ServerStats& stats, bool edge = false);

    // Serves a client the loop found ready: sends what is queued first (that
    // makes room for what is read next), then reads and echoes. The echo goes
    // straight to the socket when nothing is queued (no copy); what the
    // socket does not take waits in the queue. `error` (EPOLLERR, POLLERR):
    // close, with SO_ERROR as the reason; `hangup` (both directions shut,
    // typically a reset): close, "reset".
    Next serve(Client& c, bool readable, bool writable, bool error = false, bool hangup = false);

    // What to watch for a client, from its state alone.
    [[nodiscard]] static Next next(const Client& c);

  private:
    Next read_and_echo(Client& c, Next n);
    ServerStats& stats_;
    bool edge_;
    std::vector<char> buf_;  // the loop's one read buffer
};

// The options of a readiness lab (add_echo_options adds the first two).
struct EchoOptions {
    ServerOptions server;
    std::size_t out_limit = OutQueue::kDefaultLimit;  // --out-limit
    bool edge = false;                                // echo-epoll --edge
    unsigned workers = 1;                             // echo-epoll --workers
};

// Everything an echo event loop is made of besides its model: the stop
// signals, the log, the acceptor on the listening socket, the clients and the
// echo. The driver (echo_driver.hpp) holds one; the lab adds its backend.
// `shared_open`: with worker processes, the count of clients served at once
// that they share (--max-clients holds across them), else nullptr.
struct EchoLoop {
    EchoLoop(const EchoOptions& opts, StopSignals& stop_signals, Fd listener, ServerStats& stats,
             SharedCount* shared_open = nullptr)
        : stop(stop_signals),
          edge(opts.edge),
          log(opts.server.verbose),
          acceptor(std::move(listener), opts.server.max_clients, stats, log),
          clients(opts.out_limit, log),
          session(stats, opts.edge) {
        acceptor.share_count(shared_open);
        clients.share_count(shared_open);
    }
    StopSignals& stop;  // its fd() is one more descriptor to watch
    bool edge;
    Log log;
    Acceptor acceptor;
    ClientTable clients;
    EchoSession session;
};

// The reason a socket reported an error condition (EPOLLERR, POLLERR):
// SO_ERROR, read and cleared. "reset" for ECONNRESET, else "error: TEXT".
std::string socket_error(int fd);

}  // namespace iolab
