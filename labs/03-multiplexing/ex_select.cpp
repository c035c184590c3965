// ex-select — write it yourself: the select backend of the readiness echo
// server. Once your three verbs are in place this program is echo-select,
// and the integration tests that check echo-select run on it.
//
// Usage: ex-select [--host 127.0.0.1] [--port 0] [--max-clients N]
//                  [--out-limit BYTES] [-v]
//
// The loop, accepting (--max-clients, EMFILE shedding), the echo with its
// bounded output queue, the stop signalfd and the summary line are done
// already: common/echo_driver.hpp drives a backend, a class with three verbs
// (LAB.md § The code):
//
//   watch(fd, read, write)  start or change watching fd: "" when done, else why
//                           not (the driver then closes that client and logs
//                           "refused PEER: WHY")
//   forget(fd)              stop watching fd; the driver closes it right after
//   wait(timeout, fired)    sleep until something watched is ready, then call
//                           fired(fd, Ready{read, write}) for each
//
// Yours is SelectSet below: its three bodies are the TODO(you)s. As shipped,
// wait() is not written: the server prints its "listening on" line, then
// stops with a message saying so. labs/03-multiplexing/echo_select.cpp is the
// reference answer; write yours before you read it.
//
// Check it (LAB.md exercise ex-select): from the repository root,
//     . scripts/lab.sh
//     lab_build ex-select test_ex_select && lab_ctest ex-select
// runs the echo integration tests (concurrent byte-exact echoes, resets,
// backpressure, SIGTERM summary, --max-clients, idle CPU, and 1,100
// connections: the ones past FD_SETSIZE refused) on build/bin/ex-select and
// prints "check: PASS" or what is missing. Then measure it beside the
// reference: scripts/compare-multiplexing.sh --quick --server ex-select.
//
// Linux notes: select(2) overwrites the sets it is given with its answer;
// nfds is the highest descriptor + 1, not a count; glibc's fd_set holds
// FD_SETSIZE = 1024 bits, and FD_SET(fd >= 1024) writes outside it (memory
// corruption, or an abort "bit out of range" with _FORTIFY_SOURCE).

#include <sys/select.h>

#include <CLI/CLI.hpp>
#include <stdexcept>
#include <string>

#include "common/echo_server.hpp"
#include "common/error.hpp"

namespace {

using iolab::Ready;

// The interest set: two bitmaps of our own (the masters), copied for every
// select() because select() writes its answer over them.
class SelectSet {
  public:
    SelectSet() {
        FD_ZERO(&read_);
        FD_ZERO(&write_);
    }

    // Start or change watching fd: readable if `read`, writable if `write`.
    std::string watch([[maybe_unused]] int fd, [[maybe_unused]] bool read,
                      [[maybe_unused]] bool write) {
        // TODO(you): (LAB.md § The code, select) first refuse a descriptor
        // the bitmaps cannot hold: fd >= FD_SETSIZE returns
        // "descriptor N >= FD_SETSIZE (1024), select() cannot watch it"
        // (the driver closes that connection, logs why and serves the
        // others). Then set or clear fd's bit in read_ and in write_, and
        // keep maxfd_, the highest descriptor watched.
        return {};
    }

    // Stop watching fd; the driver closes it right after.
    void forget([[maybe_unused]] int fd) {
        // TODO(you): (LAB.md § The code, select) clear both bits; if fd was
        // maxfd_, walk maxfd_ down to the next descriptor still set (or -1).
    }

    // Sleep until something watched is ready (timeout_ms: -1 = no limit),
    // then call fired(fd, Ready{...}) for each ready descriptor.
    template <class Fired>
    void wait([[maybe_unused]] int timeout_ms, [[maybe_unused]] Fired&& fired) {
        // TODO(you): (LAB.md § The code, select) copy the masters (select()
        // writes its answer over what it is given), select(maxfd_ + 1, ...)
        // with a timeval for timeout_ms (NULL when -1); EINTR: return (the
        // driver calls again); another error: iolab::throw_sys("select", ...).
        // Then test every bit up to the maxfd_ you passed and call
        // fired(fd, Ready{.read = ..., .write = ...}) for each descriptor set
        // in either answer. fired may watch() and forget(): walk your copies.
        throw std::logic_error(
            "SelectSet::wait() is not written yet, so nothing can be served "
            "(the TODO(you)s in labs/03-multiplexing/ex_select.cpp)");
    }

  private:
    fd_set read_, write_;              // the masters: what we watch for
    [[maybe_unused]] int maxfd_ = -1;  // the highest descriptor in either
};

}  // namespace

int main(int argc, char** argv) {
    return iolab::echo_main(argc, argv, "ex-select",
                            "Write it yourself: the select backend of the echo server (lab 03)",
                            iolab::no_more_options, [](auto&) { return SelectSet(); });
}
