#include <catch2/catch.hpp>
#include <cerrno>

#include "common/error.hpp"

TEST_CASE("SysError names the call, the context and the errno text", "[errors]") {
    iolab::SysError e("connect", "127.0.0.1:9007", ECONNREFUSED);
    CHECK(std::string(e.what()) == "connect 127.0.0.1:9007: Connection refused");
    CHECK(e.err() == ECONNREFUSED);
    CHECK(e.code() == std::error_code(ECONNREFUSED, std::system_category()));
    CHECK_THROWS_MATCHES(iolab::throw_sys("bind", "[::1]:80", EACCES), iolab::SysError,
                         Catch::Matchers::Message("bind [::1]:80: Permission denied"));
    CHECK(iolab::sys_message("read", "10.0.0.1:5", ECONNRESET) ==
          "read 10.0.0.1:5: Connection reset by peer");
    CHECK(iolab::sys_message("epoll_create1", "", EMFILE) == "epoll_create1: Too many open files");
}
