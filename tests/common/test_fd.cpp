#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/fd.hpp"

using iolab::Fd;

namespace {
bool is_open(int fd) {
    return fcntl(fd, F_GETFD) != -1;
}
}  // namespace

TEST_CASE("Fd closes its descriptor when it dies", "[fd]") {
    int raw = -1;
    {
        Fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        REQUIRE(fd.valid());
        raw = fd.get();
        REQUIRE(is_open(raw));
    }
    CHECK_FALSE(is_open(raw));
}

TEST_CASE("Fd moves ownership and never closes twice", "[fd]") {
    Fd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = a.get();
    Fd b(std::move(a));
    CHECK_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is the point
    CHECK(b.get() == raw);
    Fd c;
    c = std::move(b);
    CHECK(c.get() == raw);
    CHECK(is_open(raw));
    c = Fd();  // move-assigning an empty Fd closes the old descriptor
    CHECK_FALSE(is_open(raw));
}

TEST_CASE("Fd::release gives up ownership, reset replaces", "[fd]") {
    Fd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = a.release();
    CHECK_FALSE(a.valid());
    CHECK(is_open(raw));
    a.reset(raw);
    CHECK(a.get() == raw);
    int other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    a.reset(other);
    CHECK_FALSE(is_open(raw));
    CHECK(a.get() == other);
    a.reset();
    CHECK_FALSE(is_open(other));
    CHECK_FALSE(static_cast<bool>(a));
}
