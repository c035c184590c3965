// echo-select — readiness multiplexing with select(2), the oldest form: one
// thread, bitmaps of descriptors, one system call that says which are ready.
//
// Usage: echo-select [--host 127.0.0.1] [--port 0] [--max-clients N]
//                    [--out-limit BYTES] [-v]
//
// An fd_set is a bitmap with one bit per descriptor number. The program sets
// the bits it cares about — readfds: tell me when a read (or accept) would not
// block; writefds: tell me when a write would not block — and passes
// maxfd + 1, the number of bits to look at. The kernel copies the bitmaps in,
// calls the poll method of every descriptor whose bit is set, sleeps on all of
// their wait queues if none is ready, and on wakeup overwrites the bitmaps
// with the answer: only the ready bits are left. That is why the sets are
// rebuilt from the program's own state before every call. Cost: O(maxfd) per
// call in the kernel and again in the program, which must test every bit.
// (glibc issues select(3) as the pselect6 system call: strace shows that name.)
//
// The hard limit: glibc's fd_set has FD_SETSIZE = 1024 bits. FD_SET(1500, &s)
// writes past the end of the structure — memory corruption, not an error
// code. A select server must therefore refuse any connection whose
// descriptor number is >= FD_SETSIZE; this one closes it at once, says so
// in a log line, and keeps serving the clients it has.
//
// The loop sets a client's writefds bit only while its output queue
// (--out-limit) holds something, and clears its readfds bit while the queue
// is full (backpressure; common/echo_session.hpp).
//
//   readfds  (in)   0 0 0 1 1 0 1 1 1 ... (listener, signalfd, clients)
//   writefds (in)   0 0 0 0 0 0 0 1 0 ...  (clients with queued output)
//            select(maxfd + 1, &readfds, &writefds, NULL, NULL)
//   readfds  (out)  0 0 0 0 1 0 0 0 1 ...  only the ready bits survive
//
// Linux notes: the stop signalfd is one more bit in readfds.
// Accepting, EMFILE shedding and --max-clients: common/acceptor.hpp.

#include <sys/select.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using namespace iolab;

class Server {
  public:
    explicit Server(EchoLoop& loop) : loop_(loop) {}

    void run() {
        if (loop_.acceptor.fd() >= FD_SETSIZE || loop_.stop.fd() >= FD_SETSIZE)
            throw_sys("select", "listener fd " + std::to_string(loop_.acceptor.fd()), EBADF);
        while (!loop_.stop.requested()) {
            // select() overwrites the sets with its answer, so they are built
            // again, from our own state, before every call.
            fd_set readfds, writefds;
            FD_ZERO(&readfds);
            FD_ZERO(&writefds);
            FD_SET(loop_.stop.fd(), &readfds);
            int maxfd = loop_.stop.fd();
            if (!loop_.acceptor.paused()) {  // paused: out of memory, do not spin on it
                FD_SET(loop_.acceptor.fd(), &readfds);
                maxfd = std::max(maxfd, loop_.acceptor.fd());
            }
            for (int fd : loop_.clients.fds()) {  // every one is < FD_SETSIZE (see admit)
                const Next want = EchoSession::next(loop_.clients[fd]);
                if (want.read) FD_SET(fd, &readfds);
                if (want.write) FD_SET(fd, &writefds);
                maxfd = std::max(maxfd, fd);
            }
            // NULL: sleep until something is ready (a timeout only while
            // accepting is paused).
            const auto left = loop_.acceptor.paused_left().count();
            timeval tv{static_cast<time_t>(left / 1000000),
                       static_cast<suseconds_t>(left % 1000000)};
            int n = ::select(maxfd + 1, &readfds, &writefds, nullptr, left < 0 ? nullptr : &tv);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("select", loop_.acceptor.where());
            loop_.acceptor.resume_due();  // the listener's bit is set again next round

            if (FD_ISSET(loop_.stop.fd(), &readfds)) loop_.stop.check();
            // Test every client's bits: O(clients) whatever n is. Walk the
            // list backwards, so that removing entry i (the last one moves
            // into its place) never skips one not yet looked at.
            const std::vector<int>& open = loop_.clients.fds();
            for (std::size_t i = open.size(); i-- > 0;) {
                Client& c = loop_.clients[open[i]];
                const bool r = FD_ISSET(open[i], &readfds), w = FD_ISSET(open[i], &writefds);
                // select() has no separate error report: a reset shows up as
                // "readable", and the read that follows returns the error.
                if (!r && !w) continue;
                Next next = loop_.session.serve(c, r, w);
                if (!next.close.empty()) loop_.clients.close(c, next.close);
            }
            // Last, so that a client accepted now is not tested against bits
            // that belonged to an earlier holder of its number.
            if (FD_ISSET(loop_.acceptor.fd(), &readfds)) accept_ready();
        }
    }

  private:
    void accept_ready() {
        auto admit = [&](Fd& fd, const std::string& peer) {
            // FD_SET would write outside the fd_set: refuse (close) it, say
            // why, and go on serving the clients already here.
            if (fd.get() >= FD_SETSIZE)
                return "descriptor " + std::to_string(fd.get()) + " >= FD_SETSIZE (" +
                       std::to_string(FD_SETSIZE) + "), select() cannot watch it";
            loop_.clients.open(std::move(fd), peer);
            return std::string();
        };
        // A bounded batch: select() reports the listener again if more wait.
        loop_.acceptor.accept_batch(loop_.clients.size(), kAcceptBatch, admit);
    }

    EchoLoop& loop_;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::EchoOptions opts;
    CLI::App app{"Echo server: one thread, select(2) (descriptors below FD_SETSIZE only)"};
    iolab::add_echo_options(app, "echo-select", opts);
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-select", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM, opens the signalfd
        return iolab::serve_echo(opts, stop, [](iolab::EchoLoop& loop) { Server(loop).run(); });
    });
}
