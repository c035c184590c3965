// ex-chat-broadcast — write it yourself: a chat's broadcast, a bounded queue
// per client, and the slow reader cut off.
//
// Usage: ex-chat-broadcast [--max-queue BYTES] [--lines N] [--stall-ms MS]
//
// A chat server sends each line it reads from one client to every other
// client. On one thread it may never wait for any single client: a client
// that stops reading would stop the room. So each client gets an output
// queue in memory: a broadcast only appends to the queues and sends what each
// socket takes now (non-blocking); what a socket does not take waits, and the
// loop is told (EPOLLOUT) when that socket can take more. And each queue has
// a bound: a client whose queue would pass --max-queue is cut off, instead of
// letting it eat the server's memory.
//
// Your part is broadcast() and flush() below (the TODOs). The rest is given:
// an epoll loop on its own thread (accept, read, split lines, call
// broadcast(), call flush() when a socket you watch becomes writable, close
// the clients marked by cut_off() or close_later() after each round).
//
// The check (this program, no server of yours to start): four clients
// connect over loopback. One talks; two read everything at once; one, with a
// small receive buffer, never reads (the stalled client). The talker sends
// --lines lines of 500 bytes in batches of 50 and waits after each batch
// until both readers have it. Output:
//   reader_got_lines=N      lines the slower of the two readers got, in order
//   slowest_batch_ms=N      the longest wait for one batch
//   stalled_got_lines=N     lines the stalled client had before its close
//   cut_clients=N           clients cut off at the bound (want 1: the stalled one)
//   peak_queue_bytes=N      the largest queue after any broadcast
//   max_queue_bytes=N       the bound (--max-queue)
// then, last, `check: PASS — ...` or `check: FAIL — what is missing`. A
// batch that does not reach the readers within --stall-ms ends the check
// with the likely cause (the broadcast waits for the stalled client).
// Exit codes: 0 PASS, 3 FAIL, 1 internal error, 2 usage.
//
// Linux notes: the server's sockets get SO_SNDBUF 16 KiB (the kernel doubles
// it) and the stalled client SO_RCVBUF 4 KiB, so the kernel's own buffers
// fill after some tens of KiB and the queue's bound is reached within a
// second.

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/io.hpp"
#include "common/line_framer.hpp"
#include "common/program.hpp"
#include "common/socket.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kMaxLine = 4096;

struct Client {
    iolab::Fd fd;
    std::string peer;
    std::string out;              // the output queue: bytes not yet taken by the socket
    bool watching_write = false;  // EPOLLOUT is in the interest set (watch_writable)
    bool closing = false;         // close_later() or cut_off(): closed after this round
    bool cut = false;             // cut_off(): the queue passed the bound
    iolab::LineFramer framer{kMaxLine};
};

class Server {
  public:
    explicit Server(std::size_t max_queue)
        : max_queue_(max_queue), listener_(iolab::listen_tcp("127.0.0.1", 0)) {
        ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep_) iolab::throw_sys("epoll_create1");
        iolab::set_nonblocking(listener_.get());
        add(listener_.get(), EPOLLIN);
        port_ = iolab::local_address(listener_.get()).port();
    }

    [[nodiscard]] uint16_t port() const { return port_; }
    void stop() { stop_ = true; }
    [[nodiscard]] std::size_t joined() const { return joined_; }
    [[nodiscard]] std::size_t cuts() const { return cuts_; }
    [[nodiscard]] std::size_t peak_queue() const { return peak_queue_; }

    void run() {
        epoll_event events[64];
        while (!stop_) {
            const int n = ::epoll_wait(ep_.get(), events, 64, 100);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) iolab::throw_sys("epoll_wait");
            for (int i = 0; i < n; ++i) {
                const int fd = events[i].data.fd;
                if (fd == listener_.get()) {
                    accept_all();
                    continue;
                }
                auto it = clients_.find(fd);
                if (it == clients_.end() || it->second->closing) continue;
                Client& c = *it->second;
                if (events[i].events & EPOLLOUT) flush(c);
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_from(c);
            }
            close_marked();
        }
    }

  private:
    // ---- given: the loop's pieces -------------------------------------------

    void add(int fd, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) iolab::throw_sys("epoll_ctl(ADD)");
    }

    // Turns EPOLLOUT on or off for `c` (EPOLLIN stays on).
    [[maybe_unused]] void watch_writable(Client& c, bool on) {  // (for your flush)
        if (c.watching_write == on) return;
        epoll_event ev{};
        ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
        ev.data.fd = c.fd.get();
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) != 0)
            iolab::throw_sys("epoll_ctl(MOD)", c.peer);
        c.watching_write = on;
    }

    // Marks `c` to be closed after this round (a peer that left, an error).
    void close_later(Client& c) { c.closing = true; }

    // Marks `c` as cut off at the queue's bound: closed after this round.
    [[maybe_unused]] void cut_off(Client& c) {  // (for your broadcast)
        if (c.cut) return;
        c.cut = true;
        c.closing = true;
        std::fprintf(stderr,
                     "ex-chat-broadcast: cut off %s: more than %zu bytes of output queued\n",
                     c.peer.c_str(), max_queue_);
    }

    void accept_all() {
        for (;;) {
            iolab::Accepted a = iolab::accept_client(listener_.get(), SOCK_NONBLOCK);
            if (!a) {
                if (a.err != EAGAIN && a.err != EWOULDBLOCK)
                    std::fprintf(stderr, "ex-chat-broadcast: %s\n",
                                 iolab::sys_message("accept", "127.0.0.1", a.err).c_str());
                return;
            }
            iolab::set_int_option(a.fd.get(), SOL_SOCKET, SO_SNDBUF, 16384, "SO_SNDBUF");
            auto c = std::make_unique<Client>();
            c->peer = a.peer.to_string();
            c->fd = std::move(a.fd);
            add(c->fd.get(), EPOLLIN);
            const int fd = c->fd.get();
            clients_.emplace(fd, std::move(c));
            ++joined_;
        }
    }

    void read_from(Client& c) {
        char buf[16384];
        const iolab::IoResult r = iolab::read_some(c.fd.get(), buf);
        if (r.would_block()) return;
        if (!r.ok()) {  // the peer left (EOF) or the connection broke
            close_later(c);
            return;
        }
        c.framer.feed(
            {buf, r.bytes},
            [&](std::string_view line) {
                std::string text(line);
                text += '\n';
                broadcast(c, text);
                for (const auto& [fd, other] : clients_)
                    peak_queue_ = std::max<std::size_t>(peak_queue_, other->out.size());
            },
            [&] { close_later(c); });
    }

    void close_marked() {
        for (auto it = clients_.begin(); it != clients_.end();) {
            if (!it->second->closing) {
                ++it;
                continue;
            }
            if (it->second->cut) ++cuts_;
            ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, it->first, nullptr);
            it = clients_.erase(it);  // ~Fd closes the socket
        }
    }

    // ---- yours ------------------------------------------------------------------

    // Sends `text` (one line, with its '\n') to every client but `from`.
    void broadcast(Client& from, const std::string& text) {
        // TODO(you): the fan-out (LAB.md § 7. Write it yourself: a broadcast
        // that never waits). For each client c in clients_ other than `from`
        // and not closing: if its queue would pass max_queue_ bytes, cut_off(c)
        // instead of queueing; else append `text` to c.out and flush(c).
        (void)from;
        (void)text;
    }

    // Sends as much of c.out as the socket takes now, without waiting.
    void flush(Client& c) {
        // TODO(you): the non-blocking write (LAB.md § 7. Write it yourself: a
        // broadcast that never waits). send() from c.out until it is empty or
        // the socket is full: erase what was sent; on EAGAIN keep the rest and
        // watch_writable(c, true) (the loop calls flush again when the socket
        // can take more); once c.out is empty, watch_writable(c, false); on
        // EINTR try again; any other error (EPIPE, ECONNRESET): close_later(c).
        (void)c;
    }

    std::size_t max_queue_;
    iolab::Fd listener_;
    iolab::Fd ep_;
    uint16_t port_ = 0;
    std::map<int, std::unique_ptr<Client>> clients_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> joined_{0};
    std::atomic<std::size_t> cuts_{0};
    std::atomic<std::size_t> peak_queue_{0};
};

// ---- the check --------------------------------------------------------------------

// Line k of the talk, 500 bytes with its '\n'.
std::string talk_line(std::size_t k) {
    char head[16];
    std::snprintf(head, sizeof head, "%06zu ", k);
    std::string s(head);
    s.resize(499, static_cast<char>('a' + k % 26));
    s += '\n';
    return s;
}

// A client that reads lines and checks each against talk_line(k), in order.
struct Reader {
    iolab::Fd fd;
    std::atomic<std::size_t> good{0};
    std::atomic<bool> bad{false};
    std::atomic<bool> eof{false};
    std::string what;  // the first wrong line, set before `bad`

    void run() {
        std::string buf;
        char chunk[16384];
        for (;;) {
            const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            buf.append(chunk, static_cast<std::size_t>(n));
            std::size_t at = 0, nl;
            while ((nl = buf.find('\n', at)) != std::string::npos) {
                const std::string_view line(buf.data() + at, nl + 1 - at);
                at = nl + 1;
                if (bad) continue;
                if (line != talk_line(good)) {
                    what = "line " + std::to_string(good + 1) + " was '" +
                           std::string(line.substr(0, std::min<std::size_t>(line.size(), 12))) +
                           "...', want '" + talk_line(good).substr(0, 12) + "...'";
                    bad = true;
                    continue;
                }
                ++good;
            }
            buf.erase(0, at);
        }
        eof = true;
    }
};

iolab::Fd join(uint16_t port, int rcvbuf) {
    iolab::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) iolab::throw_sys("socket");
    if (rcvbuf > 0) iolab::set_int_option(fd.get(), SOL_SOCKET, SO_RCVBUF, rcvbuf, "SO_RCVBUF");
    const iolab::SockAddr to = iolab::SockAddr::from_numeric("127.0.0.1", port);
    if (::connect(fd.get(), to.get(), to.len) != 0) iolab::throw_sys("connect", to.to_string());
    return fd;
}

// Waits until pred() or the deadline; true if pred() held.
template <class Pred>
bool wait_until(Pred pred, milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (!pred()) {
        if (Clock::now() >= end) return pred();
        std::this_thread::sleep_for(milliseconds(1));
    }
    return true;
}

// Prints the verdict and ends the process at once: the server thread may be
// stuck in the student's code, so nothing is joined.
[[noreturn]] void fail_now(const std::string& why) {
    std::printf("check: FAIL — %s\n", why.c_str());
    std::fflush(stdout);
    std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t max_queue = 65536;
    std::size_t lines = 2000;
    int stall_ms = 3000;
    CLI::App app{"Write it yourself: a chat's broadcast with a bounded queue per client (lab 09)"};
    iolab::setup_program(app, "ex-chat-broadcast",
                         "Exit codes:\n  0  check: PASS\n  1  internal error\n  2  usage error\n"
                         "  3  check: FAIL");
    app.add_option("--max-queue", max_queue, "The bound of one client's output queue, bytes")
        ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 24))
        ->capture_default_str();
    app.add_option("--lines", lines, "Lines the talker sends (batches of 50)")
        ->check(CLI::Range(std::size_t{50}, std::size_t{100'000}))
        ->capture_default_str();
    app.add_option("--stall-ms", stall_ms, "How long a batch may take to reach the readers")
        ->check(CLI::Range(100, 60'000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);

    return iolab::guarded_main("ex-chat-broadcast", [&] {
        iolab::ignore_sigpipe();
        Server server(max_queue);
        std::thread loop([&] {
            try {
                server.run();
            } catch (const std::exception& e) {
                fail_now(std::string("the server's loop failed: ") + e.what());
            }
        });

        iolab::Fd stalled = join(server.port(), 4096);  // never read until the talk is over
        iolab::Fd talker = join(server.port(), 0);
        Reader r1, r2;
        r1.fd = join(server.port(), 0);
        r2.fd = join(server.port(), 0);
        if (!wait_until([&] { return server.joined() == 4; }, milliseconds(5000)))
            fail_now("the server accepted " + std::to_string(server.joined()) + " of 4 clients");
        std::thread t1([&] { r1.run(); }), t2([&] { r2.run(); });

        milliseconds slowest{0};
        for (std::size_t sent = 0; sent < lines;) {
            std::string batch;
            const std::size_t end = std::min(lines, sent + 50);
            for (std::size_t k = sent; k < end; ++k)
                batch += talk_line(k);
            const auto t0 = Clock::now();
            if (!iolab::write_all(talker.get(), {batch.data(), batch.size()}).ok())
                fail_now("the talker's send failed: " + iolab::errno_text(errno) +
                         " (was the talker cut off?)");
            sent = end;
            const bool arrived =
                wait_until([&] { return (r1.good >= sent && r2.good >= sent) || r1.bad || r2.bad; },
                           milliseconds(stall_ms));
            if (r1.bad || r2.bad)
                fail_now("a reader got a wrong line: " + (r1.bad ? r1.what : r2.what));
            if (!arrived && r1.good + r2.good == 0)
                fail_now("no line reached the readers within " + std::to_string(stall_ms) +
                         " ms: broadcast() and flush() send nothing yet");
            if (!arrived)
                fail_now("the readers got " + std::to_string(std::min(r1.good, r2.good)) + " of " +
                         std::to_string(sent) + " lines and nothing more for " +
                         std::to_string(stall_ms) +
                         " ms (likely: the broadcast waits for the stalled client's full socket "
                         "instead of queueing; the others starve)");
            slowest =
                std::max(slowest, std::chrono::duration_cast<milliseconds>(Clock::now() - t0));
        }
        const std::size_t reader_got = std::min(r1.good, r2.good);

        // The stalled client reads now: what was queued for it, then the close.
        Reader slow;
        slow.fd = std::move(stalled);
        std::thread ts([&] { slow.run(); });
        const bool closed = wait_until([&] { return slow.eof.load(); }, milliseconds(stall_ms));

        std::printf("reader_got_lines=%zu\nslowest_batch_ms=%lld\n", reader_got,
                    static_cast<long long>(slowest.count()));
        std::printf("stalled_got_lines=%zu\ncut_clients=%zu\n", slow.good.load(), server.cuts());
        std::printf("peak_queue_bytes=%zu\nmax_queue_bytes=%zu\n", server.peak_queue(), max_queue);
        std::fflush(stdout);

        if (!closed)
            fail_now("the stalled client was never cut off: it read " + std::to_string(slow.good) +
                     " lines and its connection is still open; the " + "largest queue reached " +
                     std::to_string(server.peak_queue()) + " bytes (bound " +
                     std::to_string(max_queue) + ")");
        if (slow.bad) fail_now("the stalled client got a wrong line: " + slow.what);
        if (server.peak_queue() > max_queue)
            fail_now("a queue held " + std::to_string(server.peak_queue()) +
                     " bytes, over the bound of " + std::to_string(max_queue));
        if (server.cuts() != 1)
            fail_now(std::to_string(server.cuts()) +
                     " clients were cut off at the bound, want 1 (the stalled one)");
        if (slow.good >= lines)
            fail_now("the stalled client got every line: it was never held back");

        server.stop();
        loop.join();
        for (iolab::Fd* fd : {&talker, &r1.fd, &r2.fd})
            ::shutdown(fd->get(), SHUT_RDWR);
        t1.join();
        t2.join();
        ts.join();
        std::printf(
            "check: PASS — %zu of %zu lines to both readers in order, the stalled client "
            "cut off after %zu lines with at most %zu bytes queued\n",
            reader_got, lines, slow.good.load(), server.peak_queue());
        return 0;
    });
}
