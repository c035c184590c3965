// The connection pieces the event-loop labs share: Acceptor (batch accept,
// --max-clients, a refusal by the loop) and EchoSession (echo, backpressure,
// level and edge reads, EOF), on real loopback sockets and socketpairs.
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "common/acceptor.hpp"
#include "common/echo_session.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"
#include "common/workers.hpp"
#include "tests/support/echo_client.hpp"

using namespace std::chrono_literals;
using iolab::Client;
using iolab::ClientTable;
using iolab::EchoSession;
using iolab::Fd;
using iolab::Next;

namespace {

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

struct Pair {
    Fd server, peer;  // server: the Client's end; peer: the test's end
    Pair() {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        server.reset(sv[0]);
        peer.reset(sv[1]);
    }
};

}  // namespace

TEST_CASE("Acceptor: a batch, --max-clients and a refusal by the loop", "[echo_session]") {
    iolab::ServerStats stats;
    iolab::Log log(false);
    iolab::Acceptor acceptor(iolab::listen_tcp("127.0.0.1", 0, {.nonblocking = true}), 2, stats,
                             log);
    const uint16_t port = iolab::local_address(acceptor.fd()).port();
    std::vector<Fd> clients;
    for (int i = 0; i < 5; ++i)
        clients.push_back(iolab::test::connect_local(port));

    std::vector<Fd> taken;
    auto admit = [&](Fd& fd, const std::string& peer) {
        CHECK(peer.rfind("127.0.0.1:", 0) == 0);
        if (taken.size() == 1 && fd.valid()) {
            taken.push_back(Fd());  // the loop refuses the second: a reason
            return std::string("no room in the test");
        }
        taken.push_back(std::move(fd));
        return std::string();
    };
    // A batch of 2: two accepted, the rest stays in the backlog.
    CHECK(acceptor.accept_batch(0, 2, admit) == 2);
    CHECK(stats.connections == 1);
    CHECK(stats.refused == 1);
    // One open client now, --max-clients 2: one more is taken, then refusals.
    CHECK(acceptor.accept_batch(1, iolab::kAcceptBatch, admit) == 3);
    CHECK(stats.connections == 2);
    CHECK(stats.refused == 3);
    CHECK(acceptor.timeout_ms() == -1);
    CHECK_FALSE(acceptor.paused());
    // The backlog is empty: nothing more.
    CHECK(acceptor.accept_batch(0, iolab::kAcceptBatch, admit) == 0);
    // The refused ones are closed at once.
    CHECK(iolab::test::closed_by_server(clients[1].get(), 5s));
    CHECK(iolab::test::closed_by_server(clients[4].get(), 5s));
}

TEST_CASE("Acceptor: at the stop, what waits in the backlog is accepted and refused",
          "[echo_session]") {
    iolab::ServerStats stats;
    iolab::Log log(false);
    iolab::Acceptor acceptor(iolab::listen_tcp("127.0.0.1", 0, {.nonblocking = true}), 10, stats,
                             log);
    const uint16_t port = iolab::local_address(acceptor.fd()).port();
    std::vector<Fd> clients;
    for (int i = 0; i < 3; ++i)
        clients.push_back(iolab::test::connect_local(port));
    CHECK(acceptor.refuse_waiting("server stopping") == 3);
    CHECK(stats.connections == 0);
    CHECK(stats.refused == 3);
    for (const Fd& c : clients)
        CHECK(iolab::test::closed_by_server(c.get(), 5s));
    CHECK(acceptor.refuse_waiting("server stopping") == 0);  // empty: EAGAIN at once
}

TEST_CASE("SharedCount: --max-clients across processes, taken and given back", "[echo_session]") {
    iolab::SharedCount open;
    CHECK(open.try_take(2));
    // A child process takes the second place: the parent sees it taken.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(open.try_take(2) && !open.try_take(2) ? 0 : 1);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(open.value() == 2);
    CHECK_FALSE(open.try_take(2));
    open.give_back();
    CHECK(open.try_take(2));
    // The client table gives a place back when it closes a client.
    iolab::Log log(false);
    ClientTable table(1024, log);
    table.share_count(&open);
    Pair p;
    Client& c = table.open(std::move(p.server), "test");
    table.close(c, "test");
    CHECK(open.value() == 1);
}

TEST_CASE("EchoSession echoes, queues what the socket refuses, and holds back reading",
          "[echo_session]") {
    iolab::ServerStats stats;
    iolab::Log log(false);
    ClientTable table(4096, log);
    EchoSession session(stats);
    Pair p;
    const int fd = p.server.get();
    Client& c = table.open(std::move(p.server), "peer");
    CHECK(table.size() == 1);

    REQUIRE(::write(p.peer.get(), "hello", 5) == 5);
    Next n = session.serve(c, true, false);
    CHECK(n.close.empty());
    CHECK(n.read);
    CHECK_FALSE(n.write);
    CHECK(n.moved);
    CHECK(iolab::test::read_with_timeout(p.peer.get(), 5, 5s) == "hello");
    iolab::set_nonblocking(p.peer.get(), true);

    // The peer writes and never reads: the echo fills the socket buffers,
    // then the 4 KiB queue; a full queue means "stop watching for reading".
    std::string chunk(16384, 'x');
    for (int round = 0; round < 10000 && n.read; ++round) {
        (void)iolab::write_some(p.peer.get(), chunk);
        n = session.serve(table[fd], true, n.write);
    }
    CHECK_FALSE(n.read);
    CHECK(n.write);
    CHECK(table[fd].out.full());
    // The peer reads everything: the queue drains, reading resumes.
    std::vector<char> buf(1 << 20);
    for (int round = 0; round < 10000 && (n.write || !n.read); ++round) {
        (void)iolab::read_some(p.peer.get(), buf);
        n = session.serve(table[fd], false, true);
    }
    CHECK(n.read);
    CHECK_FALSE(n.write);
    CHECK(stats.bytes_in >= stats.bytes_out);

    // EOF: once everything is echoed, the session says close, "eof".
    while (iolab::read_some(p.peer.get(), buf).ok()) {
    }
    ::shutdown(p.peer.get(), SHUT_WR);
    for (int round = 0; round < 10000; ++round) {
        n = session.serve(table[fd], true, true);
        if (!n.close.empty()) break;
        (void)iolab::read_some(p.peer.get(), buf);
    }
    CHECK(n.close == "eof");
    table.close(table[fd], n.close);
    CHECK(table.size() == 0);
    CHECK(stats.bytes_in == stats.bytes_out);
}

TEST_CASE("EchoSession: level reads once per report, edge reads until EAGAIN", "[echo_session]") {
    for (bool edge : {false, true}) {
        INFO((edge ? "edge" : "level"));
        iolab::ServerStats stats;
        iolab::Log log(false);
        ClientTable table(1 << 20, log);
        EchoSession session(stats, edge);
        Pair p;
        Client& c = table.open(std::move(p.server), "peer");
        // More than one read buffer (64 KiB) waiting.
        std::string data(150000, 'y');
        std::size_t sent = iolab::write_some(p.peer.get(), data).bytes;
        REQUIRE(sent > 64 * 1024);
        session.serve(c, true, false);
        CHECK(readable(c.fd.get()) == !edge);  // level: bytes left for the next report
    }
}

TEST_CASE("EchoSession: an error or a hang-up closes with its reason", "[echo_session]") {
    iolab::ServerStats stats;
    iolab::Log log(false);
    ClientTable table(4096, log);
    EchoSession session(stats);
    Pair p;
    Client& c = table.open(std::move(p.server), "peer");
    CHECK(session.serve(c, false, false, false, true).close == "reset");
    CHECK(session.serve(c, false, false, true, false).close == "reset");  // SO_ERROR 0
    p.peer.reset();
    Next n = session.serve(c, true, false);
    CHECK(n.close == "eof");  // FIN read, nothing queued
}
