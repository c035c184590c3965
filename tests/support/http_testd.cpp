#include "tests/support/http_testd.hpp"

#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/io.hpp"
#include "tests/support/echo_client.hpp"

namespace iolab::test {

std::string testd_pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t j = i % 65521;
        s[i] = static_cast<char>((j * 31 + j / 251) & 0xFF);
    }
    return s;
}

Testd::Testd(std::vector<std::string> extra)
    : proc([&] {
          std::vector<std::string> argv{bin("http-testd"), "--port", "0"};
          argv.insert(argv.end(), extra.begin(), extra.end());
          return argv;
      }()) {}

std::string Testd::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(proc.port()) + path;
}

std::string Testd::stats_text() {
    RunResult r = run({bin("http-get"), url("/stats")}, std::chrono::seconds(10));
    REQUIRE(r.exit_code == 0);
    return r.out;
}

RunResult http_get(std::vector<std::string> args, std::chrono::milliseconds limit) {
    args.insert(args.begin(), bin("http-get"));
    return run(args, limit);
}

RawReply raw_exchange(uint16_t port, const std::string& request, std::chrono::milliseconds limit) {
    Fd fd = connect_local(port);
    write_all(fd.get(), {request.data(), request.size()});
    RawReply reply;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    char buf[16384];
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) continue;
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n <= 0) {
            reply.closed = true;  // EOF, or a reset after the answer
            break;
        }
        reply.bytes.append(buf, static_cast<std::size_t>(n));
    }
    return reply;
}

}  // namespace iolab::test
