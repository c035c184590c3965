// ex-epoll — write it yourself: the epoll backend of the readiness echo
// server. Once your three verbs are in place this program is echo-epoll,
// and the integration tests that check echo-epoll run on it.
//
// Usage: ex-epoll [--host 127.0.0.1] [--port 0] [--max-clients N] [--out-limit BYTES]
//                 [--edge] [-v]
//
// The loop, accepting (--max-clients, EMFILE shedding), the echo with its
// bounded output queue, the stop signalfd and the summary line are done
// already: common/echo_driver.hpp drives a backend, a class with three verbs
// (LAB.md § The code):
//
//   watch(fd, read, write)  start or change watching fd: "" when done, else why
//                           not (the driver then closes that client and says so)
//   forget(fd)              stop watching fd; the driver closes it right after
//   wait(timeout, fired)    sleep until something watched is ready, then call
//                           fired(fd, Ready{read, write, error, hangup}) for each
//
// Yours is EpollSet below: its three bodies are the TODO(you)s. As shipped,
// wait() is not written: the server prints its "listening on" line, then
// stops with a message saying so. labs/03-multiplexing/echo_epoll.cpp is the
// reference answer; write yours before you read it.
//
// Check it (LAB.md exercise ex-epoll): from the repository root,
//     . scripts/lab.sh
//     lab_build ex-epoll test_ex_epoll && lab_ctest ex-epoll
// runs the echo integration tests (concurrent byte-exact echoes, resets,
// backpressure, SIGTERM summary, --max-clients, idle CPU) on build/bin/ex-epoll
// and prints "check: PASS" or what is missing. Then measure it beside the
// reference: scripts/compare-multiplexing.sh --quick --server ex-epoll.
//
// Linux notes: epoll_ctl(EPOLL_CTL_ADD) on a descriptor already in the set
// fails with EEXIST (change it with EPOLL_CTL_MOD); the kernel reports
// EPOLLERR and EPOLLHUP whether asked for or not; a socket with room in its
// send buffer is always writable, so level-triggered EPOLLOUT is reported on
// every wait for as long as it is asked for.

#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using iolab::Ready;

// The interest set lives in the kernel: an epoll instance, edited with
// epoll_ctl(2) one descriptor at a time.
class EpollSet {
  public:
    explicit EpollSet(bool edge) : et_(edge ? EPOLLET : 0u), ep_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!ep_) iolab::throw_sys("epoll_create1", "ex-epoll");
    }

    // Start or change watching fd: readable if `read`, writable if `write`
    // (both false: still in the set, reported for nothing but errors).
    std::string watch([[maybe_unused]] int fd, [[maybe_unused]] bool read,
                      [[maybe_unused]] bool write) {
        // TODO(you): (LAB.md § The code, epoll) the mask the kernel should
        // hold: EPOLLIN if read, EPOLLOUT if write, and et_ (EPOLLET with
        // --edge). Skip the system call when mask_ says the kernel holds it
        // already; else epoll_ctl: EPOLL_CTL_ADD the first time (mask_ is
        // kNone), EPOLL_CTL_MOD after. data.fd = fd: it is what epoll_wait
        // hands back. On failure return "epoll_ctl: " + iolab::errno_text(errno);
        // on success remember the mask in mask_ (grow it as needed) and return "".
        return {};
    }

    // Stop watching fd; the driver closes it right after.
    void forget([[maybe_unused]] int fd) {
        // TODO(you): (LAB.md § The code, epoll) EPOLL_CTL_DEL, and forget
        // the mask: the next client may get the same descriptor number.
    }

    // Sleep until something watched is ready (timeout_ms: -1 = no limit),
    // then call fired(fd, Ready{...}) for each ready descriptor.
    template <class Fired>
    void wait([[maybe_unused]] int timeout_ms, [[maybe_unused]] Fired&& fired) {
        // TODO(you): (LAB.md § The code, epoll) epoll_wait into events_ (at
        // most kMaxEvents); EINTR: return (the driver calls again); another
        // error: iolab::throw_sys("epoll_wait", "ex-epoll"). Then, for each
        // event, fired(its data.fd, Ready{.read = EPOLLIN, .write = EPOLLOUT,
        // .error = EPOLLERR, .hangup = EPOLLHUP}) from its events bits.
        throw std::logic_error(
            "EpollSet::wait() is not written yet, so nothing can be served "
            "(the TODO(you)s in labs/03-multiplexing/ex_epoll.cpp)");
    }

  private:
    [[maybe_unused]] static constexpr uint32_t kNone = UINT32_MAX;  // not in the set
    static constexpr int kMaxEvents = 1024;            // ready descriptors per call, at most
    [[maybe_unused]] const uint32_t et_;               // EPOLLET with --edge, else 0
    iolab::Fd ep_;                                     // the epoll instance
    [[maybe_unused]] std::vector<uint32_t> mask_;      // fd -> what the kernel holds for it
    [[maybe_unused]] epoll_event events_[kMaxEvents];  // epoll_wait's answer
};

}  // namespace

int main(int argc, char** argv) {
    auto options = [](CLI::App& app, iolab::EchoOptions& opts) {
        app.add_flag("--edge", opts.edge, "Edge-triggered (EPOLLET): drain every socket to EAGAIN");
    };
    return iolab::echo_main(argc, argv, "ex-epoll",
                            "Write it yourself: the epoll backend of the echo server (lab 03)",
                            options, [](const iolab::EchoOptions& o) { return EpollSet(o.edge); });
}
