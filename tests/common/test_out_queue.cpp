// Unit tests of the bounded per-client output queue (common/out_queue.hpp).
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "common/fd.hpp"
#include "common/out_queue.hpp"
#include "common/socket.hpp"

using iolab::Fd;
using iolab::OutQueue;

namespace {
std::string bytes(std::size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng());
    return s;
}
}  // namespace

TEST_CASE("OutQueue takes bytes up to its limit and no more", "[out_queue]") {
    OutQueue q(1000);
    CHECK(q.empty());
    CHECK(q.room() == 1000);
    CHECK(q.capacity() == 0);  // nothing allocated before the first byte
    std::string a = bytes(700, 1), b = bytes(700, 2);
    CHECK(q.append(a) == 700);
    CHECK(q.room() == 300);
    CHECK(q.append(b) == 300);  // only what fits
    CHECK(q.full());
    CHECK(q.room() == 0);
    CHECK(q.append(b) == 0);
    CHECK(q.capacity() <= 1000);
    std::string got(q.pending().begin(), q.pending().end());
    CHECK(got == a + b.substr(0, 300));
}

TEST_CASE("OutQueue keeps the order across consume, compaction and growth", "[out_queue]") {
    OutQueue q(64 * 1024);
    std::string expected, out;
    std::mt19937_64 rng(3);
    for (int round = 0; round < 2000; ++round) {
        std::string chunk = bytes(rng() % 5000, static_cast<uint64_t>(round));
        std::size_t took = q.append(chunk);
        CHECK(took == std::min(chunk.size(), q.limit() - (expected.size() - out.size())));
        expected += chunk.substr(0, took);
        std::size_t drop = q.size() == 0 ? 0 : rng() % (q.size() + 1);
        out.append(q.pending().data(), drop);
        q.consume(drop);
        REQUIRE(q.size() == expected.size() - out.size());
        REQUIRE(q.capacity() <= q.limit());
    }
    out.append(q.pending().data(), q.size());
    q.consume(q.size());
    CHECK(out == expected);
    CHECK(q.empty());
}

TEST_CASE("OutQueue gives a large buffer back once it drains", "[out_queue]") {
    OutQueue q(256 * 1024);
    std::string big = bytes(200 * 1024, 4);
    REQUIRE(q.append(big) == big.size());
    CHECK(q.capacity() >= big.size());
    q.consume(q.size());
    CHECK(q.capacity() == 0);
    // A small one is kept for the next burst.
    REQUIRE(q.append(bytes(100, 5)) == 100);
    std::size_t small = q.capacity();
    CHECK(small > 0);
    q.consume(100);
    CHECK(q.capacity() == small);
}

TEST_CASE("OutQueue::flush writes until the socket is full, then keeps the rest", "[out_queue]") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    Fd a(sv[0]), b(sv[1]);
    iolab::set_nonblocking(a.get());
    iolab::set_nonblocking(b.get());
    int small = 4096;
    ::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    OutQueue q(4 << 20);
    std::string data = bytes(4 << 20, 6);
    REQUIRE(q.append(data) == data.size());
    iolab::IoResult r = q.flush(a.get());
    CHECK(r.would_block());  // 4 MiB does not fit in a unix socket's buffer
    CHECK(r.bytes > 0);
    CHECK(q.size() == data.size() - r.bytes);
    // Drain the other end and flush again until everything went through.
    std::string got;
    std::string buf(64 * 1024, '\0');
    for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
        ssize_t n = ::read(b.get(), buf.data(), buf.size());
        if (n > 0) got.append(buf.data(), static_cast<std::size_t>(n));
        iolab::IoResult f = q.flush(a.get());
        REQUIRE_FALSE(f.error());
    }
    CHECK(got == data);
    CHECK(q.empty());
    // A closed peer is an error, not a signal.
    REQUIRE(q.append(std::string(10, 'x')) == 10);
    b.reset();
    iolab::IoResult e = q.flush(a.get());
    CHECK(e.error());
    CHECK(e.err == EPIPE);
}
