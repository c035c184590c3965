// ReserveFd and the Acceptor's EMFILE shedding, in a child process whose
// RLIMIT_NOFILE is lowered until accept(2) fails with EMFILE.
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <vector>

#include "common/acceptor.hpp"
#include "common/reserve_fd.hpp"
#include "common/socket.hpp"
#include "tests/support/echo_client.hpp"

using namespace std::chrono_literals;

namespace {

// Runs `body` in a forked child whose RLIMIT_NOFILE is the lowest free
// descriptor number + 2, so that a test can use up what is left; returns the
// child's exit code (0: every check in `body` held).
template <class Body>
int in_child_out_of_descriptors(Body body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int probe = ::dup(0);  // the lowest free number: everything below is in use
        ::close(probe);
        rlimit rl{static_cast<rlim_t>(probe + 2), static_cast<rlim_t>(probe + 2)};
        if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(90);
        ::_exit(body());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// Takes every descriptor still free (they close with the child).
void fill_descriptors() {
    while (::dup(0) >= 0) {
    }
}

}  // namespace

TEST_CASE("ReserveFd sheds the pending connections when accept says EMFILE", "[reserve_fd]") {
    iolab::Fd listener = iolab::listen_tcp("127.0.0.1", 0, {.nonblocking = true});
    const uint16_t port = iolab::local_address(listener.get()).port();
    std::vector<iolab::Fd> clients;
    for (int i = 0; i < 5; ++i)
        clients.push_back(iolab::test::connect_local(port));

    const int rc = in_child_out_of_descriptors([&] {
        iolab::ReserveFd reserve;  // takes a spare slot
        fill_descriptors();        // and these the others: none left
        if (!reserve.armed()) return 1;
        int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK);
        if (fd >= 0 || errno != EMFILE) return 2;
        iolab::ReserveFd::Outcome o = reserve.shed(listener.get(), EMFILE);
        if (o.shed != 5) return 3;  // every pending connection accepted and closed
        if (o.pause) return 4;      // and the reserve taken back
        if (!reserve.armed()) return 5;
        // ENOBUFS: a free descriptor would not help; the caller must pause.
        if (!reserve.shed(listener.get(), ENOBUFS).pause) return 6;
        return 0;
    });
    REQUIRE(rc == 0);
    // The shed clients see their connection end (EOF or a reset), not a hang.
    for (auto& c : clients)
        CHECK(iolab::test::closed_by_server(c.get(), 5s));
}

TEST_CASE("Acceptor counts shed connections as refused and keeps going", "[reserve_fd]") {
    iolab::Fd listener = iolab::listen_tcp("127.0.0.1", 0, {.nonblocking = true});
    const uint16_t port = iolab::local_address(listener.get()).port();
    std::vector<iolab::Fd> clients;
    for (int i = 0; i < 3; ++i)
        clients.push_back(iolab::test::connect_local(port));

    const int rc = in_child_out_of_descriptors([&] {
        iolab::ServerStats stats;
        iolab::Log log(false);
        iolab::Acceptor acceptor(std::move(listener), 100, stats, log);  // + its reserve
        fill_descriptors();
        int admitted = 0;
        std::size_t n =
            acceptor.accept_batch(0, iolab::kAcceptBatch, [&](iolab::Fd&, const std::string&) {
                ++admitted;
                return std::string();
            });
        if (admitted != 0 || n != 3) return 2;
        if (stats.refused.load() != 3 || stats.connections.load() != 0) return 3;
        if (acceptor.paused()) return 4;  // shed, not paused: nothing left to spin on
        return 0;
    });
    REQUIRE(rc == 0);
}
