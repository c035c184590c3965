#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <vector>

#include "common/error.hpp"
#include "common/socket.hpp"

using namespace iolab;
using namespace std::chrono_literals;

TEST_CASE("listen_tcp on port 0 gets a free port; accept returns the peer", "[socket]") {
    Fd lst = listen_tcp("127.0.0.1", 0);
    SockAddr at = local_address(lst.get());
    REQUIRE(at.port() != 0);
    Fd c = connect_tcp(at, 2s);
    Accepted a = accept_client(lst.get(), SOCK_NONBLOCK);
    REQUIRE(a);
    CHECK(a.err == 0);
    CHECK(a.peer.host() == "127.0.0.1");
    CHECK(a.peer.port() == local_address(c.get()).port());
    CHECK(peer_address(a.fd.get()).to_string() == a.peer.to_string());
}

TEST_CASE("accept_client on an empty non-blocking listener reports EAGAIN", "[socket]") {
    Fd lst = listen_tcp("127.0.0.1", 0, {.nonblocking = true});
    Accepted a = accept_client(lst.get());
    CHECK_FALSE(a);
    CHECK((a.err == EAGAIN || a.err == EWOULDBLOCK));
}

TEST_CASE("listen_tcp on a busy port names the address and the reason", "[socket]") {
    Fd first = listen_tcp("127.0.0.1", 0);
    uint16_t port = local_address(first.get()).port();
    CHECK_THROWS_WITH(listen_tcp("127.0.0.1", port),
                      "bind 127.0.0.1:" + std::to_string(port) + ": Address already in use");
    // SO_REUSEPORT lets two listeners share a port when both ask for it.
    Fd a = listen_tcp("127.0.0.1", 0, {.reuse_port = true});
    uint16_t shared = local_address(a.get()).port();
    CHECK_NOTHROW(listen_tcp("127.0.0.1", shared, {.reuse_port = true}));
}

TEST_CASE("listen and connect over IPv6 loopback", "[socket]") {
    Fd lst = listen_tcp("::1", 0);
    SockAddr at = local_address(lst.get());
    CHECK(at.family() == AF_INET6);
    Fd c = connect_tcp("::1", at.port(), 2s);
    Accepted a = accept_client(lst.get());
    REQUIRE(a);
    CHECK(a.peer.host() == "::1");
}

TEST_CASE("connect to a closed port is refused, naming the address", "[socket]") {
    uint16_t port;
    {
        Fd lst = listen_tcp("127.0.0.1", 0);
        port = local_address(lst.get()).port();
    }  // closed: nothing listens there now
    try {
        connect_tcp(SockAddr::from_numeric("127.0.0.1", port), 2s);
        FAIL("connect succeeded");
    } catch (const SysError& e) {
        CHECK(e.err() == ECONNREFUSED);
        CHECK(std::string(e.what()) ==
              "connect 127.0.0.1:" + std::to_string(port) + ": Connection refused");
    }
}

TEST_CASE("connect times out against a listener whose backlog is full", "[socket]") {
    // A listener that never accepts, with the smallest backlog: once its accept
    // queue is full the kernel drops further SYNs, and the connect hangs until
    // our timeout.
    Fd lst = listen_tcp("127.0.0.1", 0, {.backlog = 0});
    SockAddr at = local_address(lst.get());
    std::vector<Fd> parked;
    bool timed_out = false;
    for (int i = 0; i < 16 && !timed_out; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        try {
            parked.push_back(connect_tcp(at, 300ms));
        } catch (const SysError& e) {
            REQUIRE(e.err() == ETIMEDOUT);
            CHECK(std::string(e.what()) == "connect " + at.to_string() + ": Connection timed out");
            auto took = std::chrono::steady_clock::now() - t0;
            CHECK(took >= 290ms);
            CHECK(took < 3s);
            timed_out = true;
        }
    }
    CHECK(timed_out);
    CHECK_FALSE(parked.empty());  // the first ones fit in the queue
}

TEST_CASE("set_nonblocking toggles O_NONBLOCK", "[socket]") {
    Fd lst = listen_tcp("127.0.0.1", 0);
    set_nonblocking(lst.get(), true);
    CHECK_FALSE(accept_client(lst.get()));  // returns at once
    set_nonblocking(lst.get(), false);
    CHECK_THROWS_WITH(set_nonblocking(-1), Catch::Matchers::StartsWith("fcntl(F_GETFL) fd -1: "));
}
