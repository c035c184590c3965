// ex-str-cli — write it yourself: Stevens' echo client, str_cli, in its three
// steps (UNIX Network Programming vol. 1, sections 5.5, 6.4 and 6.7).
//
// Usage: ex-str-cli [--mode stop-and-wait|select|shutdown] HOST:PORT
//        ex-str-cli --check [--lines N]
//
// Copies standard input to an echo server and the echoes to standard output.
// Interactively the three modes look the same; with a file piped in (batch
// input: `ex-str-cli ... < lines.txt | wc -l`) they do not:
//
//   stop-and-wait  send a line, block in read(2) until its echo is back, print
//                  it, next line. Correct, but one round trip per line: the
//                  pipe between the two hosts is empty almost all the time.
//   select         select(2) on stdin and the socket: send what stdin gives as
//                  soon as it gives it, print echoes as they come. The pipe
//                  stays full — but at end of file on stdin it returns at
//                  once, and the echoes still on their way are lost.
//   shutdown       the same select loop, and at end of file on stdin it sends
//                  a FIN with shutdown(SHUT_WR) (the server sees EOF after
//                  the last byte), stops watching stdin, and keeps reading
//                  the socket until the server's own EOF: every echo is back.
//                  close(2) could not do that: it ends both directions.
//
// Your part is the end-of-file step of the shutdown mode (the TODO(you) in
// copy_with_select).
//
// --check: the check of your part (LAB.md exercise str-cli). It runs the
// shutdown mode in a child process, its stdin N lines, against a server of
// its own that holds every echo back until it reads the client's EOF — as a
// server busy elsewhere might: only a client that half-closes and then keeps
// reading gets them all. It prints what it saw (check_lines_sent=,
// check_server_saw_eof=, check_lines_echoed=, check_identical=) and last
// "check: PASS" or "check: FAIL — what is missing". Every step is bounded
// (5 s): a client that never sends its FIN is reported, not waited for.
//
// The server's EOF before ours is an error ("server terminated prematurely",
// exit 3), as in Stevens.

#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/program.hpp"
#include "common/socket.hpp"

namespace {

enum class Mode { stop_and_wait, select, shutdown };

// Thrown when the server closes before we have sent everything.
struct ServerGone : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void write_stdout(std::string_view bytes) {
    iolab::IoResult w = iolab::write_all(STDOUT_FILENO, bytes);
    if (!w.ok()) throw std::runtime_error(w.describe("write", "stdout"));
}

// Stevens 5.5: one line out, its echo back, then the next line.
void stop_and_wait(int sock, const std::string& peer) {
    std::vector<char> line(4096);
    std::vector<char> buf(4096);
    while (std::fgets(line.data(), static_cast<int>(line.size()), stdin) != nullptr) {
        const std::string_view out(line.data(), std::char_traits<char>::length(line.data()));
        iolab::IoResult w = iolab::write_all(sock, out);
        if (!w.ok()) throw std::runtime_error(w.describe("write", peer));
        // Block until as many bytes as we sent have come back.
        for (std::size_t back = 0; back < out.size();) {
            iolab::IoResult r = iolab::read_some(sock, std::span(buf.data(), out.size() - back));
            if (r.eof()) throw ServerGone("read " + peer + ": server terminated prematurely");
            if (!r.ok()) throw std::runtime_error(r.describe("read", peer));
            write_stdout(std::string_view(buf.data(), r.bytes));
            back += r.bytes;
        }
    }
    if (std::ferror(stdin)) iolab::throw_sys("read", "stdin");
}

// Stevens 6.4 (select) and 6.7 (select + shutdown). read(2), never stdio, on
// stdin: a line stdio had buffered would be invisible to select (6.5).
void copy_with_select(int sock, const std::string& peer, Mode mode) {
    std::vector<char> buf(8192);
    bool stdin_eof = false;
    for (;;) {
        fd_set readable;
        FD_ZERO(&readable);
        if (!stdin_eof) FD_SET(STDIN_FILENO, &readable);
        FD_SET(sock, &readable);
        if (::select(sock + 1, &readable, nullptr, nullptr, nullptr) < 0) {
            if (errno == EINTR) continue;
            iolab::throw_sys("select", peer);
        }
        if (FD_ISSET(sock, &readable)) {  // echoes: straight to stdout
            iolab::IoResult r = iolab::read_some(sock, buf);
            if (r.eof()) {
                if (stdin_eof) return;  // the server's FIN after ours: all echoes are in
                throw ServerGone("read " + peer + ": server terminated prematurely");
            }
            if (!r.ok()) throw std::runtime_error(r.describe("read", peer));
            write_stdout(std::string_view(buf.data(), r.bytes));
        }
        if (FD_ISSET(STDIN_FILENO, &readable)) {  // input: straight to the server
            iolab::IoResult r = iolab::read_some(STDIN_FILENO, buf);
            if (r.eof()) {
                if (mode == Mode::select) return;  // 6.4: echoes in flight are lost
                // TODO(you): (LAB.md § 8, Write it yourself: Stevens' str_cli)
                // the shutdown mode must not return here. Send our
                // FIN with shutdown(2) (SHUT_WR: the server reads EOF after
                // the last line; our reading side stays open), stop watching
                // stdin (stdin_eof), and go on: the loop returns when the
                // server's EOF arrives.
                return;
            }
            if (!r.ok()) throw std::runtime_error(r.describe("read", "stdin"));
            iolab::IoResult w = iolab::write_all(sock, std::string_view(buf.data(), r.bytes));
            if (!w.ok()) throw std::runtime_error(w.describe("write", peer));
        }
    }
}

// ---- --check: the shutdown mode against a server that echoes late ---------

using Clock = std::chrono::steady_clock;

// Waits until fd is readable, at most until `deadline`: false on timeout.
bool readable_before(int fd, Clock::time_point deadline) {
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) iolab::throw_sys("poll", "the check");
    }
}

// Waits for the child, at most until `deadline`; kills it after that.
// Its exit status, or nullopt when it had to be killed.
std::optional<int> reap(pid_t child, Clock::time_point deadline) {
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(child, &status, WNOHANG);
        if (r == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (Clock::now() >= deadline) {
            ::kill(child, SIGKILL);
            ::waitpid(child, &status, 0);
            return std::nullopt;
        }
        ::usleep(10'000);
    }
}

// Prints the figures and the verdict; returns the exit code (0 = PASS).
int run_check(std::size_t lines) {
    constexpr auto kStep = std::chrono::seconds(5);
    std::string input;
    for (std::size_t i = 1; i <= lines; ++i)
        input += "line " + std::to_string(i) + "\n";
    // Both pipes hold everything (the pipe buffer is 64 KiB): the child's
    // stdin is written before it starts, its stdout is read after it ends.
    if (input.size() > 60'000) throw std::runtime_error("--lines: too much for a pipe");
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) iolab::throw_sys("pipe", "the check");
    if (!iolab::write_all(in[1], std::string_view(input)).ok())
        iolab::throw_sys("write", "the child's stdin");
    ::close(in[1]);

    iolab::Fd listener = iolab::listen_tcp("127.0.0.1", 0);
    const iolab::SockAddr where = iolab::local_address(listener.get());
    std::fflush(stdout);
    const pid_t child = ::fork();
    if (child < 0) iolab::throw_sys("fork", "the check");
    if (child == 0) {  // the client: the shutdown mode, as a user would run it
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        ::close(in[0]);
        ::close(out[0]);
        ::close(out[1]);
        listener.reset();
        int rc = 0;
        try {
            iolab::Fd sock = iolab::connect_tcp(where, std::chrono::seconds(5));
            copy_with_select(sock.get(), where.to_string(), Mode::shutdown);
        } catch (const ServerGone& e) {
            std::fprintf(stderr, "ex-str-cli: %s\n", e.what());
            rc = 3;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ex-str-cli: %s\n", e.what());
            rc = 1;
        }
        std::fflush(stderr);
        ::_exit(rc);
    }
    ::close(in[0]);
    ::close(out[1]);
    iolab::Fd child_out(out[0]);

    // The server: read everything until the client's EOF, and only then
    // echo it all and close.
    std::string got;
    bool saw_eof = false;
    std::string server_error;
    if (!readable_before(listener.get(), Clock::now() + kStep)) {
        server_error = "the client did not connect within 5 s";
    } else {
        iolab::Accepted a = iolab::accept_client(listener.get());
        if (!a) iolab::throw_sys("accept", where.to_string(), a.err);
        std::vector<char> buf(8192);
        auto deadline = Clock::now() + kStep;
        while (!saw_eof && server_error.empty()) {
            if (!readable_before(a.fd.get(), deadline)) {
                server_error = "timeout";
                break;
            }
            iolab::IoResult r = iolab::read_some(a.fd.get(), buf);
            if (r.eof()) {
                saw_eof = true;
            } else if (!r.ok()) {
                server_error = r.describe("read", a.peer.to_string());
            } else {
                got.append(buf.data(), r.bytes);
                deadline = Clock::now() + kStep;  // 5 s of silence after the last byte
            }
        }
        if (saw_eof) {
            // The client may have closed its reading side: a failed send is
            // its loss, not the check's.
            (void)iolab::write_all(a.fd.get(), std::string_view(got));
        }
    }  // the connection closes: the client reads our EOF after the echoes

    const std::optional<int> rc = reap(child, Clock::now() + kStep);
    std::string echoed;
    for (std::vector<char> buf(8192);;) {
        iolab::IoResult r = iolab::read_some(child_out.get(), buf);
        if (!r.ok() || r.eof()) break;
        echoed.append(buf.data(), r.bytes);
    }
    const auto count = [](const std::string& t) {
        return static_cast<std::size_t>(std::count(t.begin(), t.end(), '\n'));
    };
    std::printf("check_lines_sent=%zu\ncheck_server_got_lines=%zu\ncheck_server_saw_eof=%d\n",
                lines, count(got), saw_eof ? 1 : 0);
    std::printf("check_lines_echoed=%zu\ncheck_identical=%d\n", count(echoed),
                echoed == input ? 1 : 0);
    if (rc) std::printf("check_client_exit=%d\n", *rc);

    std::string fail;
    const std::string n_of = " of " + std::to_string(lines);
    if (!server_error.empty() && server_error != "timeout") {
        fail = server_error;
    } else if (!saw_eof && got == input) {
        fail = "the server read all " + std::to_string(lines) +
               " lines but no EOF within 5 s, and held its echoes back: the client never "
               "sent its FIN (at the end of stdin, shutdown(sock, SHUT_WR))";
    } else if (!saw_eof) {
        fail = "the server read " + std::to_string(count(got)) + n_of +
               " lines and then nothing for 5 s, no EOF";
    } else if (rc && *rc == 3) {
        fail =
            "the client took the server's EOF for 'server terminated prematurely' "
            "(exit 3): after its own EOF it must stop watching stdin (stdin_eof = true)";
    } else if (rc && *rc != 0 && echoed != input) {
        fail = std::to_string(count(echoed)) + n_of + " lines came back and the client exited " +
               std::to_string(*rc) + " (its error is above)";
    } else if (echoed.empty()) {
        fail = "the client ended with 0" + n_of +
               " echoes: at the end of stdin it must half-close (shutdown(sock, SHUT_WR)) and "
               "keep reading until the server's EOF (SHUT_RDWR or close() would end the "
               "reading too)";
    } else if (echoed != input) {
        fail = std::to_string(count(echoed)) + n_of + " lines came back" +
               (count(echoed) == lines ? ", but not byte for byte" : "");
    } else if (!rc) {
        fail =
            "every echo came back, but the client did not exit within 5 s of the "
            "server's EOF";
    } else if (*rc != 0) {
        fail = "every echo came back, but the client exited " + std::to_string(*rc);
    }
    if (fail.empty()) {
        std::printf("check: PASS — %zu of %zu echoes back after the half-close\n", lines, lines);
        return 0;
    }
    std::printf("check: FAIL — %s (the TODO(you) in copy_with_select, LAB.md exercise 8)\n",
                fail.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    Mode mode = Mode::stop_and_wait;
    std::string target;
    CLI::App app{"Stevens' echo client str_cli: stop-and-wait, select, select + shutdown"};
    iolab::setup_program(app, "ex-str-cli",
                         "Exit codes:\n  0  stdin copied, echoes printed\n"
                         "  1  internal error (connect, read, write failed)\n  2  usage error\n"
                         "  3  the server closed before our input ended\n"
                         "With --check: 0 PASS, 1 FAIL (the last line says what is missing)");
    std::string mode_name = "stop-and-wait";
    app.add_option("--mode", mode_name, "stop-and-wait | select | shutdown")
        ->check(CLI::IsMember({"stop-and-wait", "select", "shutdown"}))
        ->capture_default_str();
    bool check = false;
    std::size_t check_lines = 2000;
    app.add_option("server", target, "The echo server, HOST:PORT");
    app.add_flag("--check", check,
                 "Check the shutdown mode against a server of its own that echoes only after "
                 "the client's EOF; print check: PASS or what is missing");
    app.add_option("--lines", check_lines, "With --check: lines of input")
        ->check(CLI::Range(std::size_t{1}, std::size_t{5000}))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    if (check) {
        if (!target.empty()) return iolab::usage_error(app, "--check takes no HOST:PORT");
        return iolab::guarded_main("ex-str-cli", [&] {
            iolab::ignore_sigpipe();
            return run_check(check_lines);
        });
    }
    if (target.empty()) return iolab::usage_error(app, "HOST:PORT is required (or --check)");
    mode = mode_name == "select"     ? Mode::select
           : mode_name == "shutdown" ? Mode::shutdown
                                     : Mode::stop_and_wait;
    iolab::HostPort server;
    try {
        server = iolab::parse_host_port(target);
    } catch (const iolab::AddressError& e) {
        return iolab::usage_error(app, target + ": " + e.what());
    }

    return iolab::guarded_main("ex-str-cli", [&] {
        iolab::ignore_sigpipe();
        iolab::Fd sock = iolab::connect_tcp(server.host, server.port, std::chrono::seconds(5));
        const std::string peer = iolab::peer_address(sock.get()).to_string();
        try {
            if (mode == Mode::stop_and_wait)
                stop_and_wait(sock.get(), peer);
            else
                copy_with_select(sock.get(), peer, mode);
        } catch (const ServerGone& e) {
            std::fprintf(stderr, "ex-str-cli: %s\n", e.what());
            return 3;
        }
        return 0;
    });
}
