// ex-str-cli — write it yourself: Stevens' echo client, str_cli, in its three
// steps (UNIX Network Programming vol. 1, sections 5.5, 6.4 and 6.7).
//
// Usage: ex-str-cli [--mode stop-and-wait|select|shutdown] HOST:PORT
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
// Your part is the end-of-file step of the shutdown mode (the TODO in
// copy_with_select).
//
// The server's EOF before ours is an error ("server terminated prematurely",
// exit 3), as in Stevens.

#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
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
                // TODO(you): the shutdown mode must not return here. Send our
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

}  // namespace

int main(int argc, char** argv) {
    Mode mode = Mode::stop_and_wait;
    std::string target;
    CLI::App app{"Stevens' echo client str_cli: stop-and-wait, select, select + shutdown"};
    iolab::setup_program(app, "ex-str-cli",
                         "Exit codes:\n  0  stdin copied, echoes printed\n"
                         "  1  internal error (connect, read, write failed)\n  2  usage error\n"
                         "  3  the server closed before our input ended");
    std::string mode_name = "stop-and-wait";
    app.add_option("--mode", mode_name, "stop-and-wait | select | shutdown")
        ->check(CLI::IsMember({"stop-and-wait", "select", "shutdown"}))
        ->capture_default_str();
    app.add_option("server", target, "The echo server, HOST:PORT")->required();
    IOLAB_PARSE(app, argc, argv);
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
