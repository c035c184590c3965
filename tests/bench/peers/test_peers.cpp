// The peer event loops of bench/peers (what scripts/bench-event-loop.sh
// compares lab 06's loop-echo with): each must be a correct echo server of
// the suite before its figures mean anything — byte-exact echoes of 1 B to
// 1 MiB to 100 concurrent clients, a reset that disturbs no other client,
// SIGTERM with an exact summary, a reset storm counted connect for connect.
#include <catch2/catch.hpp>
#include <string>

#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using iolab::test::EchoServerSpec;

#ifdef IOLAB_HAVE_PEER_LIBUV
IOLAB_ECHO_FIXTURE_CASES("peer-libuv", (EchoServerSpec{"peer-libuv", {}}))
#endif
IOLAB_ECHO_FIXTURE_CASES("peer-libevent", (EchoServerSpec{"peer-libevent", {}}))
#ifdef IOLAB_HAVE_PEER_ASIO
IOLAB_ECHO_FIXTURE_CASES("peer-asio", (EchoServerSpec{"peer-asio", {}}))
#endif
IOLAB_ECHO_FIXTURE_CASES("peer-asyncio streams",
                         (EchoServerSpec{"peer-asyncio", {"--api", "streams"}}))
IOLAB_ECHO_FIXTURE_CASES("peer-asyncio protocol",
                         (EchoServerSpec{"peer-asyncio", {"--api", "protocol"}}))
IOLAB_ECHO_FIXTURE_CASES("peer-asyncio uvloop streams",
                         (EchoServerSpec{"peer-asyncio", {"--api", "streams", "--loop", "uvloop"}}))
IOLAB_ECHO_FIXTURE_CASES("peer-asyncio uvloop protocol",
                         (EchoServerSpec{"peer-asyncio",
                                         {"--api", "protocol", "--loop", "uvloop"}}))

// The command line of the script (the C++ peers are in tests/programs with
// every other program): a usage error is one line and exit 2; --port 0
// announces the port it got.
TEST_CASE("peer-asyncio: usage errors are one line and exit 2", "[integration]") {
    using namespace std::chrono_literals;
    for (std::vector<std::string> bad : {std::vector<std::string>{"--api", "threads"},
                                         {"--loop", "trio"},
                                         {"--port", "70000"},
                                         {"--bogus"}}) {
        std::vector<std::string> argv{iolab::test::bin("peer-asyncio")};
        argv.insert(argv.end(), bad.begin(), bad.end());
        iolab::test::RunResult r = iolab::test::run(argv, 30s);
        INFO(bad[0] << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind("peer-asyncio: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}

// What every server of the suite also does: --max-clients refuses and counts
// the third client; the C and C++ peers name a busy port like the others and
// survive running out of descriptors without spinning (the libevent and
// Asio peers rest 100 ms and say why).
TEST_CASE("peers: --max-clients 2 refuses and counts the third client", "[integration]") {
    using iolab::test::bin;
    std::vector<std::vector<std::string>> peers{
        {bin("peer-libevent"), "--port", "0"},
        {bin("peer-asyncio"), "--port", "0"},
        {bin("peer-asyncio"), "--port", "0", "--api", "protocol", "--loop", "uvloop"}};
#ifdef IOLAB_HAVE_PEER_LIBUV
    peers.push_back({bin("peer-libuv"), "--port", "0"});
#endif
#ifdef IOLAB_HAVE_PEER_ASIO
    peers.push_back({bin("peer-asio"), "--port", "0"});
#endif
    for (const auto& argv : peers) {
        INFO(argv[0] << " " << argv.back());
        iolab::test::check_max_clients(argv);
    }
}

TEST_CASE("peers: a busy port, --version, --bogus; EMFILE survived", "[integration]") {
    using iolab::test::bin;
    std::vector<std::string> peers{"peer-libevent"};
#ifdef IOLAB_HAVE_PEER_LIBUV
    peers.push_back("peer-libuv");
#endif
#ifdef IOLAB_HAVE_PEER_ASIO
    peers.push_back("peer-asio");
#endif
    for (const auto& p : peers) {
        INFO(p);
        iolab::test::check_server_arguments(p);
        // libuv's own trick (a spare descriptor to accept and close the
        // backlog with) reports nothing to the program, so there is no
        // "Too many open files" line to look for.
        if (p == "peer-libuv") continue;
        auto s = iolab::test::check_emfile_survived({bin(p), "--port", "0"});
        CHECK(s.has_value());
    }
}
