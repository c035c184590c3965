// echo-poll — readiness multiplexing with poll(2): one thread, one array of
// struct pollfd, and a wait that says which of them are ready.
//
// Usage: echo-poll [--host 127.0.0.1] [--port 0] [--max-clients N] [--out-limit BYTES] [-v]
//
// The program keeps an array of {fd, events, revents}: for every descriptor,
// what it waits for (POLLIN: bytes to read or a connection to accept;
// POLLOUT: room in the send buffer). poll(2) copies the whole array into the
// kernel, calls each socket's poll method — and if none is ready, hooks the
// thread onto every socket's wait queue and sleeps until one of them wakes it
// — then copies the array back with revents filled in. Unlike select(2) there
// is no FD_SETSIZE ceiling and nothing to rebuild: `events` survives the call,
// and the program edits the array only when a client comes, goes, or changes
// what it waits for. Like select(2), each call costs O(array size): with
// 19,000 idle connections and one busy one, every wakeup walks 19,000 entries.
//
//   pollfd[]  { listener POLLIN } { signalfd POLLIN } { c1 POLLIN } { c2 POLLIN|POLLOUT } ...
//        │  poll(fds, n, -1)  — copied in, every entry checked, copied out
//        ▼
//   revents   {      POLLIN     } {        0        } {     0     } {      POLLOUT       } ...
//
// The loop asks for write readiness only while a client's output queue
// (--out-limit) holds something, and stops asking for read readiness while
// the queue is full: backpressure (common/echo_session.hpp). Accepting,
// EMFILE shedding and --max-clients: common/acceptor.hpp. The stop signalfd
// is watched like any socket. The kernel reports errors and hang-ups
// whether asked for or not (POLLERR, POLLHUP; POLLNVAL: not a descriptor).

#include <poll.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using namespace iolab;

class Server {
  public:
    explicit Server(EchoLoop& loop) : loop_(loop) {}

    void run() {
        // The interest set: an array we own. [0] listener (poll() skips it as
        // -1), [1] signalfd, [2 + i] the client table's fds()[i], in step.
        fds_.push_back({loop_.acceptor.fd(), POLLIN, 0});
        fds_.push_back({loop_.stop.fd(), POLLIN, 0});
        loop_.acceptor.on_watch([&](bool on) { fds_[0].fd = on ? loop_.acceptor.fd() : -1; });

        while (!loop_.stop.requested()) {
            // The whole array goes in; every entry's revents comes back.
            int n = ::poll(fds_.data(), fds_.size(), loop_.acceptor.timeout_ms());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("poll", loop_.acceptor.where());
            loop_.acceptor.resume_due();
            // Every revents must be looked at: O(clients). Backwards, so that a
            // removal skips nothing and the listener (entry 0) comes last.
            for (std::size_t i = fds_.size(); i-- > 0;) {
                const auto ev = static_cast<unsigned>(fds_[i].revents);
                auto serve = [&](Client& c) { client_ready(c, ev); };
                if (ev != 0)
                    loop_.dispatch(
                        fds_[i].fd, [&] { accept_ready(); }, serve);
            }
        }
    }

  private:
    void accept_ready() {
        auto admit = [&](Fd& fd, const std::string& peer) {
            // The array grows by one entry: "tell me when it is readable".
            fds_.push_back({fd.get(), POLLIN, 0});
            loop_.clients.open(std::move(fd), peer);
            return std::string();
        };
        // A bounded batch: poll() reports the listener again if more wait.
        loop_.acceptor.accept_batch(loop_.clients.size(), kAcceptBatch, admit);
    }

    void client_ready(Client& c, unsigned ev) {
        Next n = loop_.session.serve(c, ev & POLLIN, ev & POLLOUT, ev & POLLERR, ev & POLLHUP);
        if (!n.close.empty()) return close(c, n.close);
        // What this client waits for in the next poll(): a store in our own
        // array, no system call (the whole array goes to the kernel anyway).
        fds_[2 + c.index].events =
            static_cast<short>((n.read ? POLLIN : 0) | (n.write ? POLLOUT : 0));
    }

    void close(Client& c, const std::string& why) {
        // Out of the array first: the last entry moves into this one's place,
        // as in the client table; the array stays dense (its length: the cost).
        fds_[2 + c.index] = fds_.back();
        fds_.pop_back();
        loop_.clients.close(c, why);
    }

    EchoLoop& loop_;
    std::vector<pollfd> fds_;  // the interest set, handed to poll() whole
};

}  // namespace

int main(int argc, char** argv) {
    iolab::EchoOptions opts;
    CLI::App app{"Echo server: one thread, poll(2)"};
    iolab::add_echo_options(app, "echo-poll", opts);
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-poll", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        return iolab::serve_echo(opts, stop, [](iolab::EchoLoop& loop) { Server(loop).run(); });
    });
}
