// ex-sendall — write it yourself: send every byte through a non-blocking socket.
//
// Usage: ex-sendall [--bytes N] [--sndbuf BYTES] [--peer-delay-us US]
//
// On a non-blocking socket, send(2) copies only what fits in the socket's
// send buffer and returns that count — a *short write* — or fails with
// EAGAIN when nothing fits at all. It never waits. A program that calls it
// once and moves on has silently dropped the rest; the classic fix, Stevens'
// writen() and Python's socket.sendall(), is a loop around it.
//
// This program makes the short write happen on purpose. It connects to
// itself over loopback (a listener on 127.0.0.1, port chosen by the kernel),
// gives the sending socket a small send buffer (--sndbuf) and O_NONBLOCK, and
// starts a "slow peer" thread that reads the other end 4 KiB at a time with a
// pause (--peer-delay-us) between reads. Then it calls send_all() once with
// --bytes bytes of a known pattern, closes its sending side, and lets the
// peer say what it got.
//
// Your part is send_all() below (the TODO(you)). The rest counts what
// happens: counted_send() wraps send(2) and counts calls, short writes,
// EAGAINs and retries made right after an EAGAIN without a wait;
// wait_writable() sleeps in poll(2) until the socket can take more. The
// program checks your send_all (LAB.md exercise sendall) and says, last,
// "check: PASS" or "check: FAIL — what is missing".
//
// Output (KEY=VALUE, the lab's exercise checks them):
//   wanted_bytes=N          what send_all was asked to send
//   sent_bytes=N            what send_all says it sent
//   send_calls=N            send(2) calls made
//   short_writes=N          calls that took some bytes but not all asked
//   eagain=N                calls that took nothing (EAGAIN)
//   waits=N                 poll(2) waits for POLLOUT
//   spins=N                 send(2) calls made right after an EAGAIN, with no
//                           wait in between (a busy loop: 0 in a correct answer)
//   peer_received_bytes=N   what the slow peer read before EOF
//   intact=1|0              the peer got exactly the bytes, in order
//
// Linux notes: the kernel doubles the SO_SNDBUF you ask for (the extra is for
// its bookkeeping) and has a floor of about 4.5 KiB; loopback moves data into
// the peer's receive buffer at once, so what one send(2) takes is roughly the
// free room in both buffers.
//
// Exit codes: 0 check: PASS; 3 check: FAIL (bytes lost or damaged, send_all
// stopped early, or it spun on EAGAIN); 1 internal error; 2 usage error.

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/program.hpp"
#include "common/socket.hpp"

namespace {

// The byte at offset i of the stream: a pattern in which a lost, repeated or
// reordered block shows.
char pattern(std::size_t i) {
    return static_cast<char>((i * 7 + (i >> 12)) & 0xff);
}

struct Counters {
    std::size_t send_calls = 0;
    std::size_t short_writes = 0;
    std::size_t eagain = 0;
    std::size_t waits = 0;
    std::size_t spins = 0;         // calls right after an EAGAIN, no wait between
    bool last_was_eagain = false;  // the previous call failed with EAGAIN
};
Counters counters;

// send(2) as it is, counted. MSG_NOSIGNAL: a peer that went away is EPIPE,
// not a SIGPIPE that kills the program.
ssize_t counted_send(int fd, const char* p, std::size_t n) {
    ++counters.send_calls;
    if (counters.last_was_eagain) ++counters.spins;
    const ssize_t got = ::send(fd, p, n, MSG_NOSIGNAL);
    counters.last_was_eagain = got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    if (counters.last_was_eagain) ++counters.eagain;
    if (got >= 0 && static_cast<std::size_t>(got) < n) ++counters.short_writes;
    return got;
}

// Sleeps in poll(2) until `fd` is writable (true), or 10 s pass (false).
[[maybe_unused]] bool wait_writable(int fd) {  // (unused until you write send_all)
    ++counters.waits;
    counters.last_was_eagain = false;
    pollfd p{fd, POLLOUT, 0};
    for (;;) {
        const int n = ::poll(&p, 1, 10'000);
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) iolab::throw_sys("poll", "the sending socket");
    }
}

struct SendResult {
    std::size_t sent = 0;  // bytes send(2) accepted
    int err = 0;           // 0, or the errno that stopped it
};

// Sends every byte of `data` on the non-blocking socket `fd`, or stops at a
// real error (EPIPE, ECONNRESET, ...) and says which.
SendResult send_all(int fd, std::span<const char> data) {
    SendResult r;
    // TODO(you): (LAB.md § 8, Write it yourself: a send_all that survives
    // short writes) one send() takes only what fits in the send buffer. Loop
    // until every byte is sent: after a short write send the rest; on EAGAIN
    // wait with wait_writable(fd) (false: give up with ETIMEDOUT) and try
    // again; on EINTR just try again; any other error ends the loop in r.err.
    const ssize_t n = counted_send(fd, data.data(), data.size());
    if (n >= 0)
        r.sent = static_cast<std::size_t>(n);
    else
        r.err = errno;
    return r;
}

// The slow peer: reads until EOF, 4 KiB at a time, pausing between reads.
struct PeerReport {
    std::size_t received = 0;
    bool intact = true;
    std::string error;
};
void slow_peer(iolab::Fd fd, std::string sender, std::chrono::microseconds pause, PeerReport& out) {
    std::vector<char> buf(4096);
    for (;;) {
        iolab::IoResult r = iolab::read_some(fd.get(), buf);
        if (r.eof()) return;
        if (!r.ok()) {
            out.error = r.describe("read", sender);
            return;
        }
        for (std::size_t k = 0; k < r.bytes; ++k)
            if (buf[k] != pattern(out.received + k)) out.intact = false;
        out.received += r.bytes;
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t bytes = std::size_t{1} << 20;
    int sndbuf = 4096;
    int peer_delay_us = 200;
    CLI::App app{"Write it yourself: a send_all() that survives short writes (lab 02)"};
    iolab::setup_program(app, "ex-sendall",
                         "Exit codes:\n  0  check: PASS (every byte intact, no busy loop)\n"
                         "  1  internal error\n  2  usage error\n"
                         "  3  check: FAIL (bytes lost or damaged, or a busy loop on EAGAIN)");
    app.add_option("--bytes", bytes, "Bytes to send")
        ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20))
        ->capture_default_str();
    app.add_option("--sndbuf", sndbuf, "SO_SNDBUF of the sending socket (the kernel doubles it)")
        ->check(CLI::Range(1024, 1 << 24))
        ->capture_default_str();
    app.add_option("--peer-delay-us", peer_delay_us, "Pause of the slow peer between 4 KiB reads")
        ->check(CLI::Range(0, 100'000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);

    return iolab::guarded_main("ex-sendall", [&] {
        iolab::Fd listener = iolab::listen_tcp("127.0.0.1", 0);
        const iolab::SockAddr where = iolab::local_address(listener.get());
        iolab::Fd out = iolab::connect_tcp(where, std::chrono::seconds(5));
        iolab::Accepted in = iolab::accept_client(listener.get());
        if (!in) iolab::throw_sys("accept", where.to_string(), in.err);
        // A read that waits longer than this means the sender is stuck: end.
        timeval tv{10, 0};
        if (::setsockopt(in.fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
            iolab::throw_sys("setsockopt(SO_RCVTIMEO)", where.to_string());
        iolab::set_int_option(out.get(), SOL_SOCKET, SO_SNDBUF, sndbuf, "SO_SNDBUF");
        iolab::set_nonblocking(out.get());

        std::vector<char> data(bytes);
        for (std::size_t i = 0; i < bytes; ++i)
            data[i] = pattern(i);

        PeerReport peer;
        std::thread reader(slow_peer, std::move(in.fd), in.peer.to_string(),
                           std::chrono::microseconds(peer_delay_us), std::ref(peer));
        const SendResult r = send_all(out.get(), data);
        ::shutdown(out.get(), SHUT_WR);  // the peer's read returns 0 after the last byte
        reader.join();

        std::printf("wanted_bytes=%zu\nsent_bytes=%zu\n", bytes, r.sent);
        std::printf("send_calls=%zu\nshort_writes=%zu\neagain=%zu\nwaits=%zu\nspins=%zu\n",
                    counters.send_calls, counters.short_writes, counters.eagain, counters.waits,
                    counters.spins);
        std::printf("peer_received_bytes=%zu\n", peer.received);
        const bool intact = peer.intact && peer.received == bytes;
        std::printf("intact=%d\n", intact ? 1 : 0);
        if (r.err != 0)
            std::fprintf(stderr, "ex-sendall: %s\n",
                         iolab::sys_message("send", where.to_string(), r.err).c_str());
        if (!peer.error.empty()) std::fprintf(stderr, "ex-sendall: peer: %s\n", peer.error.c_str());
        if (!intact)
            std::fprintf(stderr, "ex-sendall: the peer got %zu of %zu bytes%s\n", peer.received,
                         bytes, peer.intact ? "" : ", some of them wrong");
        // The verdict, last: the first thing missing, named.
        std::string fail;
        const std::string of = std::to_string(r.sent) + " of " + std::to_string(bytes) + " bytes";
        if (r.err == EAGAIN || r.err == EWOULDBLOCK) {
            fail = "send_all gave up at EAGAIN after " + of +
                   ": EAGAIN means the buffer is full for now; wait_writable(fd), then send the "
                   "rest";
        } else if (r.err != 0) {
            fail = "send_all stopped after " + of + ": " + iolab::errno_text(r.err);
        } else if (r.sent < bytes) {
            fail = "send_all returned after " + of + " (" + std::to_string(counters.send_calls) +
                   " send call(s)): a short write is not the end, send the rest";
        } else if (!intact) {
            fail = "the peer got " + std::to_string(peer.received) + " of " +
                   std::to_string(bytes) + " bytes" + (peer.intact ? "" : ", some of them wrong") +
                   ": after a short write, send from data + sent, not from the start";
        } else if (counters.spins > 0) {
            fail = "every byte arrived, but send() was called again right after EAGAIN " +
                   std::to_string(counters.spins) + " time(s), " +
                   std::to_string(counters.send_calls) + " calls in all, " +
                   std::to_string(counters.waits) +
                   " waits: a busy loop; sleep in wait_writable(fd) until there is room";
        }
        if (fail.empty()) {
            std::printf("check: PASS — %zu bytes intact in %zu send calls, %zu waits\n", bytes,
                        counters.send_calls, counters.waits);
            return 0;
        }
        std::printf("check: FAIL — %s\n", fail.c_str());
        return 3;
    });
}
