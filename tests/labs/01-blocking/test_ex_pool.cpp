// The write-it-yourself thread pool (labs/01-blocking/ex_pool.cpp, LAB.md
// exercise ex-pool): the integration cases echo-threaded --pool passes, run
// on ex-pool --pool N --queue Q, and two of the pool's own — N clients served
// at once; with every worker busy and the queue full, the next client refused
// and counted — each after a quick look that fails in seconds with the likely
// cause. Labelled ex-pool (the presets leave ^ex- labels out: as shipped the
// accepting thread serves every client itself, and these fail); the student
// runs them with
//     . scripts/lab.sh; lab_build ex-pool test_ex_pool && lab_ctest ex-pool
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>
#include <thread>

#include "common/io.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/student_server.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

namespace {

const StudentHints kHints{
    .file = "labs/01-blocking/ex_pool.cpp (enqueue, worker)",
    .no_echo =
        "no worker served the queued client: enqueue() must call changed.notify_one() after "
        "the push (nothing else wakes a worker asleep in wait()), and worker() must take the "
        "front client and serve it",
    .reused_fd =
        "the first client's worker never came back for the next: worker() must loop, take "
        "the next client and serve it with the lock released",
    .no_stop =
        "a worker never returns, so run() waits to join it: worker()'s wait must also end "
        "when `stopping` is set, and an empty queue then means return",
};

const std::string kSerialHint =
    "clients are served one at a time: enqueue() must queue the client and return to "
    "accept() at once, and each worker must release the lock before serve() (a worker "
    "that serves under the lock stops the other workers and the accept loop)";

std::vector<std::string> argv(const std::string& pool, const std::string& queue) {
    return {bin("ex-pool"), "--port", "0", "--pool", pool, "--queue", queue};
}

// The reference cases run with the pool and queue of echo-threaded --pool 8.
EchoServerSpec spec() {
    return EchoServerSpec{"ex-pool", {"--pool", "8", "--queue", "256"}};
}

// Lines of `text` that begin with `prefix`.
std::size_t lines_starting(const std::string& text, const std::string& prefix) {
    std::size_t n = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(prefix, 0) == 0) ++n;
    return n;
}

// Waits (bounded) until the server's -v log has said "connect" `n` times.
bool connects_logged(const ServerProcess& server, std::size_t n, std::chrono::milliseconds t) {
    const auto end = std::chrono::steady_clock::now() + t;
    while (lines_starting(server.err(), "connect ") < n) {
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

}  // namespace

TEST_CASE("ex-pool: a client is echoed, then a second, then SIGTERM ends it", "[ex-pool]") {
    require_basic_echo(argv("2", "4"), kHints);
}

TEST_CASE("ex-pool: --pool 3 serves 3 clients at once", "[ex-pool]") {
    require_basic_echo(argv("3", "4"), kHints);
    ServerProcess server(argv("3", "4"));
    std::mt19937_64 rng(81);
    // Each client is echoed and stays: its worker sleeps in read().
    std::vector<iolab::Fd> clients;
    for (int i = 1; i <= 3; ++i) {
        clients.push_back(connect_local(server.port()));
        EchoOutcome o = echo_over(clients.back().get(), random_payload(rng, 200), 3s);
        if (!o.ok)
            FAIL("client " << i << " of 3 got no echo while the " << i - 1
                           << " before it stay connected (" << o.error
                           << ") — likely: " << kSerialHint);
    }
    clients.clear();
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}

TEST_CASE("ex-pool: with the pool busy and the queue full, the next client is refused and counted",
          "[ex-pool]") {
    require_basic_echo(argv("2", "1"), kHints);
    std::vector<std::string> args = argv("2", "1");
    args.emplace_back("-v");  // "connect PEER" on stderr: the third is queued
    ServerProcess server(args);
    std::mt19937_64 rng(82);
    // Two clients, echoed: both workers are busy with them.
    std::vector<iolab::Fd> served;
    for (int i = 1; i <= 2; ++i) {
        served.push_back(connect_local(server.port()));
        EchoOutcome o = echo_over(served.back().get(), random_payload(rng, 200), 3s);
        if (!o.ok)
            FAIL("client " << i << " of the 2 that --pool 2 serves at once got no echo (" << o.error
                           << ") — likely: " << kSerialHint);
    }
    // The third takes the one queue slot: accepted, but no worker is free.
    iolab::Fd queued = connect_local(server.port());
    const std::string p = random_payload(rng, 200);
    REQUIRE(iolab::write_all(queued.get(), std::span<const char>(p.data(), p.size())).ok());
    if (!connects_logged(server, 3, 3s))
        FAIL(
            "the 3rd client was not accepted within 3 s (no 3rd \"connect\" line on "
            "stderr)\nstderr: "
            << server.err());
    // The fourth finds both workers busy and the queue full.
    iolab::Fd fourth = connect_local(server.port());
    if (!closed_by_server(fourth.get(), 3s))
        FAIL_CHECK(
            "the 4th client, with both workers busy and the one queue slot (--queue 1) "
            "taken, was not closed within 3 s — likely: enqueue() never refuses: it must "
            "return false once queue.size() has reached queue_max (an unbounded queue "
            "grows without limit)\nstderr: "
            << server.err());
    if (const std::string early = read_with_timeout(queued.get(), p.size(), 200ms); !early.empty())
        FAIL_CHECK("the queued 3rd client got " << early.size()
                                                << " bytes back while both workers were busy");
    // The first leaves: its worker takes the queued client.
    served.front().reset();
    if (const std::string got = read_with_timeout(queued.get(), p.size(), 5s); got != p)
        FAIL_CHECK("the queued 3rd client, after the 1st left and freed a worker, got "
                   << got.size() << " of " << p.size()
                   << " bytes back within 5 s — likely: worker() does not come back to the "
                      "queue after serve()");
    served.clear();
    queued.reset();
    fourth.reset();
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    auto s = parse_summary(server.out());
    if (!s.has_value()) FAIL("no summary line on stdout: " << server.out());
    if (s->connections != 3 || s->refused != 1)
        FAIL_CHECK("summary: connections=" << s->connections << " refused=" << s->refused
                                           << ", expected connections=3 refused=1 (two served, "
                                              "one queued, the fourth refused)");
}

TEST_CASE("ex-pool: concurrent clients get byte-exact echoes", "[ex-pool]") {
    require_basic_echo(argv("8", "256"), kHints);
    check_concurrent_echo(spec());
}

TEST_CASE("ex-pool: a client reset mid-transfer disturbs no other", "[ex-pool]") {
    require_basic_echo(argv("8", "256"), kHints);
    check_reset_mid_transfer(spec());
}

TEST_CASE("ex-pool: SIGTERM ends it with exit 0 and an exact summary", "[ex-pool]") {
    require_basic_echo(argv("8", "256"), kHints);
    check_sigterm_summary(spec());
}

TEST_CASE("ex-pool: a reset storm is counted connect for connect", "[ex-pool]") {
    require_basic_echo(argv("8", "256"), kHints);
    check_reset_storm(spec());
}

TEST_CASE("ex-pool: refuses past --max-clients", "[ex-pool]") {
    require_basic_echo(argv("8", "256"), kHints);
    check_max_clients(argv("8", "256"));
}
