#include "tests/support/student_server.hpp"

#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <thread>

#include "common/io.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

namespace iolab::test {

namespace {

using namespace std::chrono_literals;

// The last `n` bytes of the server's stderr, for the message.
std::string tail(const std::string& s, std::size_t n = 1200) {
    return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// One client: connect, send a line, read it back (3 s at most). "" when it
// came back, else what went wrong.
std::string one_echo(uint16_t port, const std::string& line) {
    try {
        Fd fd = connect_local(port);
        if (write_all(fd.get(), std::string_view(line)).error()) return "the send failed";
        const auto t0 = std::chrono::steady_clock::now();
        const std::string got = read_with_timeout(fd.get(), line.size(), 3s);
        if (got == line) return {};
        if (got.empty())
            return std::chrono::steady_clock::now() - t0 < 2900ms
                       ? "the connection was closed without an echo"
                       : "no echo within 3 s";
        return "came back as " + std::to_string(got.size()) + " of " + std::to_string(line.size()) +
               " bytes, or different ones";
    } catch (const std::exception& e) {
        return e.what();
    }
}

// Whether the process ends within `t` (a server that dies resets the
// connections first and is reaped a moment later).
bool exits_within(Process& p, std::chrono::milliseconds t) {
    const auto end = std::chrono::steady_clock::now() + t;
    while (p.running()) {
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

}  // namespace

void require_basic_echo(const std::vector<std::string>& argv, const StudentHints& hints) {
    std::vector<std::string> args = argv;
    args.emplace_back("-v");
    ServerProcess server(args);
    const std::string name = argv.empty() ? "the server" : argv[0].substr(argv[0].rfind('/') + 1);
    // Catch2 wraps the message at 80 columns and lab_ctest shows its first
    // two lines: what happened and the likely cause come first.
    auto fail = [&](const std::string& what, const std::string& hint, bool exited) {
        const std::string err = server.err();
        std::string msg = name + ": " + what;
        if (exited) {
            // Its own last words say more than any guess.
            std::string last = err.substr(0, err.find_last_not_of('\n') + 1);
            last = last.substr(last.find_last_of('\n') + 1);
            msg += "; it exited" + (last.empty() ? std::string() : ": \"" + last + "\"");
        } else {
            msg += " — likely: " + hint;
        }
        msg += "\n(your code: " + hints.file + ")";
        if (!err.empty()) msg += "\nits stderr (-v):\n" + tail(err);
        FAIL(msg);
    };
    if (std::string why = one_echo(server.port(), "ping from the first client\n"); !why.empty())
        fail("1st client: " + why, hints.no_echo, exits_within(server, 300ms));
    if (std::string why = one_echo(server.port(), "pong from the second client\n"); !why.empty())
        fail("1st client echoed; 2nd, after it left: " + why, hints.reused_fd,
             exits_within(server, 300ms));
    const int rc = server.stop(SIGTERM, 5s);
    if (rc != 0)
        fail(rc == -1 ? "SIGTERM did not end it within 5 s"
                      : "SIGTERM ended it with exit status " + std::to_string(rc),
             hints.no_stop, rc != -1);
}

}  // namespace iolab::test
