#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "common/io.hpp"
#include "common/socket.hpp"

using namespace iolab;
using namespace std::chrono_literals;

namespace {
struct Pair {
    Fd a, b;
};
Pair socket_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    return {Fd(sv[0]), Fd(sv[1])};
}
Pair tcp_pair() {
    Fd lst = listen_tcp("127.0.0.1", 0);
    Fd c = connect_tcp(local_address(lst.get()), 2s);
    Accepted s = accept_client(lst.get());
    REQUIRE(s);
    return {std::move(c), std::move(s.fd)};
}
}  // namespace

TEST_CASE("read_some reports bytes, would_block and eof", "[io]") {
    Pair p = socket_pair();
    set_nonblocking(p.b.get());
    char buf[16];
    IoResult r = read_some(p.b.get(), buf);
    CHECK(r.would_block());
    CHECK(r.bytes == 0);
    REQUIRE(::write(p.a.get(), "hello", 5) == 5);
    r = read_some(p.b.get(), buf);
    CHECK(r.ok());
    CHECK(std::string(buf, r.bytes) == "hello");
    p.a.reset();
    r = read_some(p.b.get(), buf);
    CHECK(r.eof());
    CHECK(r.describe("read", "peer") == "read peer: end of file (peer closed)");
}

TEST_CASE("write_some stops at EAGAIN with the exact count written (short writes)", "[io]") {
    Pair p = tcp_pair();
    // A small send buffer and a reader that does not read: the kernel takes a
    // limited amount, then write_some must say exactly how much.
    int small = 4096;
    REQUIRE(::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    REQUIRE(::setsockopt(p.b.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    set_nonblocking(p.a.get());
    std::string big(4 << 20, 'x');
    for (std::size_t i = 0; i < big.size(); ++i)
        big[i] = static_cast<char>(i * 7 + 1);
    IoResult w = write_some(p.a.get(), big);
    REQUIRE(w.would_block());
    REQUIRE(w.bytes > 0);
    REQUIRE(w.bytes < big.size());
    // Everything the kernel accepted arrives, in order, and nothing more.
    std::size_t first = w.bytes;
    p.a.reset();  // FIN after the accepted bytes
    std::string got;
    char buf[65536];
    for (;;) {
        IoResult r = read_some(p.b.get(), buf);
        if (!r.ok()) {
            CHECK(r.eof());
            break;
        }
        got.append(buf, r.bytes);
    }
    CHECK(got.size() == first);
    CHECK(got == big.substr(0, first));
}

TEST_CASE("write_all on a blocking socket completes through a slow reader", "[io]") {
    Pair p = tcp_pair();
    int small = 4096;
    REQUIRE(::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    std::string big(2 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i)
        big[i] = static_cast<char>(i % 251);
    auto reader = std::async(std::launch::async, [fd = p.b.get(), n = big.size()] {
        std::string got(n, '\0');
        std::size_t off = 0;
        while (off < n) {
            std::this_thread::sleep_for(1ms);  // slow: small reads with pauses
            auto r =
                read_some(fd, std::span<char>(got.data() + off, std::min<size_t>(8192, n - off)));
            if (!r.ok()) break;
            off += r.bytes;
        }
        got.resize(off);
        return got;
    });
    IoResult w = write_all(p.a.get(), big);
    CHECK(w.ok());
    CHECK(w.bytes == big.size());
    CHECK(reader.get() == big);
}

TEST_CASE("read_exact reads across short reads and stops at eof with the count", "[io]") {
    Pair p = socket_pair();
    std::thread writer([fd = p.a.get()] {
        for (char c : std::string("abcdefghij")) {
            ::write(fd, &c, 1);
            std::this_thread::sleep_for(1ms);
        }
    });
    char buf[6];
    IoResult r = read_exact(p.b.get(), buf);
    CHECK(r.ok());
    CHECK(std::string(buf, 6) == "abcdef");
    writer.join();
    p.a.reset();
    r = read_exact(p.b.get(), buf);
    CHECK(r.eof());
    CHECK(r.bytes == 4);
    CHECK(std::string(buf, 4) == "ghij");
}

TEST_CASE("writing to a closed peer gives EPIPE, not SIGPIPE", "[io]") {
    Pair p = tcp_pair();
    p.b.reset();
    std::this_thread::sleep_for(10ms);
    std::string data(100000, 'z');
    IoResult w = write_all(p.a.get(), data);
    if (w.ok()) w = write_all(p.a.get(), data);  // the first may land before the RST
    REQUIRE(w.error());
    CHECK((w.err == EPIPE || w.err == ECONNRESET));
    CHECK(w.describe("write", "127.0.0.1:1").rfind("write 127.0.0.1:1: ", 0) == 0);
}

TEST_CASE("a reset connection reports ECONNRESET on read", "[io]") {
    Pair p = tcp_pair();
    linger lg{1, 0};
    REQUIRE(::setsockopt(p.a.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    p.a.reset();  // RST
    char buf[8];
    IoResult r = read_some(p.b.get(), buf);
    CHECK(r.error());
    CHECK(r.err == ECONNRESET);
    CHECK(r.describe("read", "x") == "read x: Connection reset by peer");
}
