// chat-client — a line chat client: the keyboard and a socket multiplexed with poll(2).
//
// Usage: chat-client HOST:PORT [--wait SECONDS]
//   chat-client 127.0.0.1:9007                    interactive: type lines, /quit to leave
//   printf '/nick bot\nhello\n' | chat-client 127.0.0.1:9007   scripted
//
// One thread waits in poll() on two descriptors at once: standard input and
// the socket. Whichever is readable is served, so lines from the server print
// the moment they arrive even while you are in the middle of typing one (the
// terminal, in canonical mode, keeps your half-typed line in its own buffer
// until Enter). Typed bytes go to a bounded output buffer that poll() writes
// to the socket when it is writable; while that buffer is full, standard input
// is not read at all — backpressure instead of unbounded memory.
//
// Leaving: /quit makes the server say goodbye and close; the client prints
// what is left and exits 0 at the server's end of stream. At the end of input
// (Ctrl-D, or the end of a pipe) the client sends what it has, half-closes
// (shutdown(SHUT_WR): "I will send nothing more"), and still prints every line
// the server sends until the server closes — so a script sees the answers to
// all of its commands. On a terminal, Ctrl-D sends /quit first.
//
// Errors name the call and the peer: "connect 127.0.0.1:9007: Connection
// refused", "read 127.0.0.1:9007: Connection reset by peer"; the exit code is 1.

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <chrono>
#include <string>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/line_framer.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxOut = 64 * 1024;   // typed bytes not yet sent
constexpr std::size_t kMaxLine = 64 * 1024;  // longest line printed from the server

class ChatClient {
  public:
    ChatClient(Fd sock, std::string peer, unsigned wait_seconds)
        : sock_(std::move(sock)),
          peer_(std::move(peer)),
          wait_(wait_seconds),
          interactive_(::isatty(STDIN_FILENO) == 1),
          framer_(kMaxLine) {}

    int run() {
        set_nonblocking(sock_.get());
        if (interactive_) log_line("connected to " + peer_ + "; /quit or Ctrl-D to leave");
        std::array<char, 16 * 1024> buf;
        for (;;) {
            if (stdin_done_ && out_.empty() && !shut_ && !write_dead_) {
                // Everything typed has been sent: tell the server we are done.
                // It answers by closing after the last lines it owes us.
                ::shutdown(sock_.get(), SHUT_WR);
                shut_ = true;
                give_up_ = Clock::now() + std::chrono::seconds(wait_);
            }
            pollfd p[2];
            p[0] = {sock_.get(), POLLIN, 0};
            if (!out_.empty() && !write_dead_) p[0].events |= POLLOUT;
            // -1: poll ignores the entry. No reading stdin while out_ is full.
            bool want_stdin = !stdin_done_ && out_.size() < kMaxOut;
            p[1] = {want_stdin ? STDIN_FILENO : -1, POLLIN, 0};

            int timeout = -1;
            if (shut_) {
                auto left =
                    std::chrono::duration_cast<std::chrono::milliseconds>(give_up_ - Clock::now());
                if (left.count() <= 0) {
                    log_line("chat-client: " + peer_ + " did not close the connection within " +
                             std::to_string(wait_) + " s");
                    return 1;
                }
                timeout = static_cast<int>(left.count());
            }
            int n = ::poll(p, 2, timeout);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("poll", peer_);

            if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                IoResult r = read_some(sock_.get(), buf);
                if (r.ok()) {
                    print(std::string_view(buf.data(), r.bytes));
                } else if (r.eof()) {
                    return finish();  // the server has said all it will say
                } else if (r.error()) {
                    log_line(r.describe("read", peer_));
                    return 1;
                }
            }
            if ((p[0].revents & POLLOUT) && !out_.empty()) {
                IoResult w = write_some(sock_.get(), out_);
                out_.erase(0, w.bytes);
                if (w.error()) {
                    // The server closed its side (after /quit, "server full", a
                    // cut-off...). Whatever it said before is still to be read.
                    write_dead_ = true;
                    out_.clear();
                    stdin_done_ = true;
                }
            }
            if (want_stdin && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                std::size_t room = kMaxOut - out_.size();
                ssize_t r = ::read(STDIN_FILENO, buf.data(), std::min(room, buf.size()));
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) throw_sys("read", "standard input");
                if (r == 0) {
                    stdin_done_ = true;
                    if (interactive_) out_ += "/quit\n";
                } else {
                    out_.append(buf.data(), static_cast<std::size_t>(r));
                }
            }
        }
    }

  private:
    void print(std::string_view bytes) {
        framer_.feed(
            bytes,
            [&](std::string_view line) {
                std::string l(line);
                l += '\n';
                IoResult w = write_all(STDOUT_FILENO, l);
                if (!w.ok()) throw SysError("write", "standard output", w.err);
            },
            [&] {
                log_line("chat-client: a line longer than " + std::to_string(kMaxLine) +
                         " bytes from " + peer_ + " was dropped");
            });
    }

    int finish() {
        if (framer_.buffered() > 0) print("\n");  // a last line without its newline
        return 0;
    }

    Fd sock_;
    std::string peer_;
    unsigned wait_;
    bool interactive_;
    LineFramer framer_;
    std::string out_;
    bool stdin_done_ = false;
    bool shut_ = false;
    bool write_dead_ = false;
    Clock::time_point give_up_{};
};

}  // namespace

int main(int argc, char** argv) {
    std::string address;
    unsigned wait = 10;
    CLI::App app{"Line chat client: stdin to the server, the server's lines to stdout"};
    app.add_option("address", address, "Server as HOST:PORT ([v6]:PORT for IPv6)")->required();
    app.add_option("--wait", wait, "Seconds to wait for the server to close after the end of input")
        ->check(CLI::Range(1u, 3600u))
        ->capture_default_str();
    iolab::setup_program(
        app, "chat-client",
        "Exit codes:\n"
        "  0  the server closed the connection (or --wait ran out after end of input)\n"
        "  1  connect or I/O error (the message names the call)\n"
        "  2  usage error");
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("chat-client", [&] {
        iolab::ignore_sigpipe();
        iolab::HostPort hp = iolab::parse_host_port(address);
        iolab::Fd sock = iolab::connect_tcp(hp.host, hp.port, std::chrono::seconds(10));
        ChatClient client(std::move(sock), hp.to_string(), wait);
        return client.run();
    });
}
