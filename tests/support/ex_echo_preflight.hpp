// Test support for the write-it-yourself echo servers (ex-uring, ex-sigio):
// a quick look, a few seconds at most, before the long integration cases.
// A student's server that never answers would otherwise keep each case
// waiting for its 60 s client timeout; this says within seconds what is
// missing, and the cases that follow are skipped with the same message.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

namespace iolab::test {

// The last `n` bytes of a server's stderr, for a failure message.
inline std::string err_tail(const Process& p, std::size_t n = 600) {
    std::string e = p.err();
    return e.size() > n ? "..." + e.substr(e.size() - n) : e;
}

// Starts `argv` (a server with --port 0) and runs, each step within a few
// seconds: an echo on client A; one on client B while A stays connected; A
// again; 1 MiB from client C, whose receive buffer is 4 KiB and which reads
// nothing for 300 ms (the server's sends come back short, or wait for room); a client reset while
// the server waits for its bytes; A half-closed (its echo, then EOF); SIGTERM: exit 0, and a
// summary counting exactly the bytes echoed. Returns "" when all went well, else what failed first,
// the step's likely cause from `hints` (indexed as the steps: 0 first echo, 1 second client, 2 same
// client again, 3 short sends, 4 reset, 5 FIN, 6 SIGTERM summary), and the tail of the server's
// stderr.
inline std::string echo_preflight(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& hints) {
    using namespace std::chrono_literals;
    auto hint = [&](std::size_t i) { return i < hints.size() ? hints[i] : std::string(); };
    ServerProcess server(argv);
    const uint16_t port = server.port();
    std::mt19937_64 rng(2323);
    uint64_t echoed = 0;
    // The first two lines say what and why (lab_ctest shows those); the
    // details follow.
    auto fail = [&](std::size_t step, const std::string& what, const std::string& detail) {
        std::string why = "likely: " + hint(step);
        // A server that died says more in its last words; give it a moment
        // to finish dying (its clients may see the close first).
        if (!server.running() || server.wait(300ms) != -1) {
            std::string e = server.err();
            while (!e.empty() && e.back() == '\n')
                e.pop_back();
            why = "the server exited: " + e.substr(e.rfind('\n') + 1);
        }
        return what + " — " + why + "\n  " + detail + "\n  server stderr: " + err_tail(server);
    };
    try {
        Fd a = connect_local(port);
        std::string pa = random_payload(rng, 100);
        EchoOutcome o = echo_over(a.get(), pa, 3s);
        if (!o.ok) return fail(0, "client A: no echo within 3 s", o.error);
        echoed += pa.size();

        Fd b = connect_local(port);
        std::string pb = random_payload(rng, 1000);
        o = echo_over(b.get(), pb, 3s);
        if (!o.ok) return fail(1, "client B (A still connected): no echo within 3 s", o.error);
        echoed += pb.size();

        std::string pa2 = random_payload(rng, 1000);
        o = echo_over(a.get(), pa2, 3s);
        if (!o.ok) return fail(2, "client A's second message: no echo within 3 s", o.error);
        echoed += pa2.size();

        Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!c) throw_sys("socket", "client C");
        int small = 4096;
        ::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        SockAddr to = SockAddr::from_numeric("127.0.0.1", port);
        if (::connect(c.get(), to.get(), to.len) != 0) throw_sys("connect", to.to_string());
        // C sends 1 MiB and reads nothing for 300 ms: the server's socket
        // fills, and its sends come back short (or wait for room).
        std::string pc = random_payload(rng, 1 << 20);
        timeval tv{10, 0};  // the writer gives up after 10 s without progress
        ::setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        std::thread writer([&] {
            std::size_t off = 0;
            while (off < pc.size()) {
                ssize_t n = ::send(c.get(), pc.data() + off, pc.size() - off, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                off += static_cast<std::size_t>(n);
            }
        });
        std::this_thread::sleep_for(300ms);
        std::string back = read_with_timeout(c.get(), pc.size(), 3s);
        writer.join();
        if (back != pc) {
            std::size_t same = 0;
            while (same < back.size() && back[same] == pc[same])
                ++same;
            return fail(3, "client C: 1 MiB not echoed byte for byte",
                        "received " + std::to_string(back.size()) + " of " +
                            std::to_string(pc.size()) + " bytes, the first " +
                            std::to_string(same) + " of them right");
        }
        echoed += pc.size();
        c.reset();

        {
            Fd r = connect_local(port);
            std::this_thread::sleep_for(100ms);  // accepted, the server waits for bytes
            linger lg{1, 0};                     // close(2) sends RST instead of FIN
            ::setsockopt(r.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        std::string pb2 = random_payload(rng, 500);
        o = echo_over(b.get(), pb2, 3s);
        if (!o.ok) return fail(4, "after a client reset: no echo within 3 s", o.error);
        echoed += pb2.size();

        std::string pa3 = random_payload(rng, 10);
        o = echo_over(a.get(), pa3, 3s, /*half_close=*/true);
        if (!o.ok) return fail(5, "client A half-closed: no echo and EOF in 3 s", o.error);
        echoed += pa3.size();
    } catch (const std::exception& e) {
        return fail(0, "a client could not connect", e.what());
    }
    int rc = server.stop(SIGTERM, 5s);
    if (rc != 0)
        return fail(6, "SIGTERM: exit status " + std::to_string(rc) + ", not 0 within 5 s",
                    "-1: still running");
    auto s = parse_summary(server.out());
    if (!s) return fail(6, "SIGTERM: no summary line on stdout", server.out());
    if (s->connections != 4 || s->bytes_in != echoed || s->bytes_out != echoed)
        return fail(6, "SIGTERM: the summary's counts are wrong",
                    "connections=" + std::to_string(s->connections) + " bytes_in=" +
                        std::to_string(s->bytes_in) + " bytes_out=" + std::to_string(s->bytes_out) +
                        "; expected connections=4 bytes_in=" + std::to_string(echoed) +
                        " bytes_out=" + std::to_string(echoed));
    return "";
}

}  // namespace iolab::test
