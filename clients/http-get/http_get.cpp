// http-get — fetch one URL over a raw TCP socket, in curl's spirit.
//
// Usage: http-get [-i] [-I] [-o FILE] [-L [--max-redirs N]] [--timeout SEC]
//                 [--connect-timeout SEC] [-v] [--fail] URL
//
// Everything a library would hide is in plain sight here: getaddrinfo returns
// IPv4 and IPv6 addresses and we try each in turn with a non-blocking connect
// bounded by poll(); the request is a string we write by hand (Host,
// User-Agent, Connection: close); the response is read with recv() into a
// fixed buffer and fed to the incremental parser of common/http, which says
// where the message ends (Content-Length, chunked, or the server's close). The
// body goes to stdout byte for byte, as `curl -s URL` prints it.
//
// Exit codes (also in --help):
//   0 success            5 timeout (connect or transfer)
//   1 internal error     6 protocol error (malformed, truncated, oversized
//   2 usage error          response; too many redirects)
//   3 name resolution    7 HTTP failure (--fail and status >= 400)
//   4 connect failed     8 I/O error (socket read/write, output file)
//                        9 https:// (TLS is outside this lab's scope)
//
// Linux notes: a connect to a closed port on loopback fails at once with
// ECONNREFUSED; to an unroutable address it would take the SYN retries
// (about two minutes), which is why the connect has its own timeout. recv()
// blocks only inside poll()'s window: a server that sends one byte a minute
// cannot hold us past --timeout.

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/http.hpp"
#include "common/io.hpp"
#include "common/server.hpp"

namespace {

using namespace iolab;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum Exit : int {
    ok = 0,
    internal = 1,
    usage = 2,
    resolve_failed = 3,
    connect_failed = 4,
    timed_out = 5,
    protocol = 6,
    http_failure = 7,
    io_error = 8,
    tls_unsupported = 9,
};

constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0 success\n"
    "  1 internal error\n"
    "  2 usage error (bad option, malformed URL)\n"
    "  3 name resolution failed\n"
    "  4 connect failed (refused, unreachable: every address tried)\n"
    "  5 timeout (connect or transfer)\n"
    "  6 protocol error (malformed, truncated or oversized response; too many redirects)\n"
    "  7 HTTP failure (--fail and a status >= 400)\n"
    "  8 I/O error (socket send/receive, writing the output)\n"
    "  9 https:// URL (TLS is outside this lab's scope)\n";

struct Options {
    std::string url;
    bool include = false;
    bool head = false;
    std::string output;
    bool location = false;
    int max_redirs = 50;
    double timeout = 30;
    double connect_timeout = 10;
    bool verbose = false;
    bool fail = false;
    std::string user_agent = std::string("iolab-http-get/") + IOLAB_VERSION;
};

// A failure with its exit code; main prints "http-get: MESSAGE".
struct Failure {
    int code;
    std::string message;
};

// Where the output goes: stdout, or -o FILE opened on the first byte (as curl
// does, a failed transfer leaves no file behind unless it got that far).
class Output {
  public:
    explicit Output(std::string path) : path_(std::move(path)) {}
    void write(std::string_view data) {
        if (data.empty()) return;
        open();
        IoResult r = write_all(fd_, {data.data(), data.size()});
        if (!r.ok()) {
            throw Failure{io_error, r.describe("write", path_.empty() ? "stdout" : path_)};
        }
    }
    // A successful transfer with an empty body still creates the file.
    void finish() { open(); }

  private:
    void open() {
        if (fd_ >= 0) return;
        if (path_.empty()) {
            fd_ = STDOUT_FILENO;
            return;
        }
        file_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!file_) throw Failure{io_error, sys_message("open", path_, errno)};
        fd_ = file_.get();
    }
    std::string path_;
    Fd file_;
    int fd_ = -1;
};

milliseconds left_until(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    return left.count() < 0 ? milliseconds(0) : left;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline, const std::string& what) {
    for (;;) {
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(left_until(deadline).count()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Failure{internal, sys_message("poll", what, errno)};
        return n > 0;
    }
}

// getaddrinfo, then a non-blocking connect to each address in turn.
Fd connect_any(const http::Url& url, const Options& o, Clock::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;  // IPv4 and IPv6
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    std::string service = std::to_string(url.port);
    int rc = ::getaddrinfo(url.host.c_str(), service.c_str(), &hints, &list);
    if (rc != 0) {
        std::string why = rc == EAI_SYSTEM ? errno_text(errno) : ::gai_strerror(rc);
        throw Failure{resolve_failed, "resolve " + url.host + ": " + why};
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(list, &::freeaddrinfo);

    // The last address's error decides the exit code: 5 if it timed out, else 4.
    Failure last{connect_failed, "connect " + url.host + ": no address"};
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        SockAddr addr;
        std::memcpy(&addr.storage, ai->ai_addr, ai->ai_addrlen);
        addr.len = ai->ai_addrlen;
        const std::string where = addr.to_string();
        if (o.verbose) log_line("*   Trying " + where + "...");
        Fd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
        if (!fd) {
            last = {connect_failed, sys_message("socket", where, errno)};
            continue;
        }
        // Each address gets the connect timeout, but never past the deadline.
        auto limit = std::min(
            deadline, Clock::now() + milliseconds(static_cast<long>(o.connect_timeout * 1000)));
        int err = 0;
        if (::connect(fd.get(), addr.get(), addr.len) != 0) {
            if (errno != EINPROGRESS) {
                err = errno;
            } else if (!wait_for(fd.get(), POLLOUT, limit, "connect " + where)) {
                err = ETIMEDOUT;
            } else {
                socklen_t len = sizeof err;
                if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
            }
        }
        if (err == 0) {
            if (o.verbose) log_line("* Connected to " + url.host + " (" + where + ")");
            return fd;
        }
        last = {err == ETIMEDOUT ? timed_out : connect_failed, sys_message("connect", where, err)};
        if (o.verbose) log_line("* " + last.message);
        if (left_until(deadline).count() == 0) break;
    }
    throw last;
}

// One request/response exchange. Returns the parsed head (body streamed to
// `out` unless `discard_body` says so for this status).
struct Hop {
    http::Response head;
    std::optional<http::Url> redirect;  // where -L goes next
};

// Kept as one function (about 90 lines) because it is the lesson: connect,
// write the request, read and parse, in that order on one page.
Hop exchange(const http::Url& url, const Options& o, Output& out, Clock::time_point deadline) {
    if (url.scheme == "https") {
        throw Failure{tls_unsupported,
                      "https:// needs TLS, which is outside this lab's scope: "
                      "use an http:// URL"};
    }
    Fd fd = connect_any(url, o, deadline);
    const std::string peer = url.authority();

    const std::string request = http::build_request(o.head ? "HEAD" : "GET", url, o.user_agent);
    if (o.verbose) {
        std::string_view r = request;
        r.remove_suffix(2);  // the final empty line
        while (!r.empty()) {
            std::size_t e = r.find("\r\n");
            log_line("> " + std::string(r.substr(0, e)));
            r.remove_prefix(e + 2);
        }
        log_line(">");
    }
    // [lab:send]
    std::size_t sent = 0;
    while (sent < request.size()) {
        if (!wait_for(fd.get(), POLLOUT, deadline, "send " + peer)) {
            throw Failure{timed_out, "send " + peer + ": timed out"};
        }
        ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) throw Failure{io_error, sys_message("send", peer, errno)};
        sent += static_cast<std::size_t>(n);
    }
    // [/lab:send]

    Hop hop;
    http::Limits limits;
    limits.max_body = uint64_t{1} << 40;  // streamed, not held: a generous bound
    http::ResponseParser parser(limits);
    parser.set_head_request(o.head);
    parser.set_keep_raw_head(true);
    bool write_body = true;
    parser.on_head([&](const http::Response& r) {
        if (o.verbose) {
            std::string_view h = r.raw_head;
            while (!h.empty()) {
                std::size_t e = h.find('\n');
                std::string_view line = h.substr(0, e);
                if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
                log_line(line.empty() ? "<" : "< " + std::string(line));
                h.remove_prefix(e == std::string_view::npos ? h.size() : e + 1);
            }
        }
        const bool redirect = o.location && r.status >= 300 && r.status < 400 &&
                              r.headers.has("Location") && r.status != 304;
        if (redirect) {
            try {
                hop.redirect = http::resolve_url(url, *r.headers.get("Location"));
            } catch (const http::UrlError& e) {
                throw Failure{protocol, "bad Location \"" +
                                            std::string(*r.headers.get("Location")) +
                                            "\": " + e.what()};
            }
        }
        const bool failing = o.fail && r.status >= 400;
        if ((o.include || o.head) && !failing) out.write(r.raw_head);
        write_body = !redirect && !failing;
    });
    parser.on_body([&](std::string_view piece) {
        if (write_body) out.write(piece);
    });

    // [lab:read]
    std::array<char, 16384> buf;
    while (!parser.done() && !parser.failed()) {
        if (!wait_for(fd.get(), POLLIN, deadline, "recv " + peer)) {
            throw Failure{timed_out, "recv " + peer + ": timed out after " +
                                         std::to_string(parser.body_bytes()) + " body bytes"};
        }
        ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) throw Failure{io_error, sys_message("recv", peer, errno)};
        if (n == 0) {
            parser.feed_eof();
            break;
        }
        // With Connection: close nothing follows the response; bytes past its
        // end would be a server bug, and are ignored like curl does.
        parser.feed({buf.data(), static_cast<std::size_t>(n)});
    }
    // [/lab:read]
    if (parser.failed()) {
        throw Failure{protocol, "response from " + peer + ": " + parser.error_message()};
    }
    hop.head = std::move(parser.response());
    return hop;
}

int run(const Options& o) {
    http::Url url;
    try {
        url = http::parse_url(o.url);
    } catch (const http::UrlError& e) {
        throw Failure{usage, "bad URL \"" + o.url + "\": " + e.what()};
    }
    const auto deadline = Clock::now() + milliseconds(static_cast<long>(o.timeout * 1000));
    Output out(o.output);
    for (int redirects = 0;; ++redirects) {
        Hop hop = exchange(url, o, out, deadline);
        if (hop.redirect) {
            if (redirects >= o.max_redirs) {
                throw Failure{protocol, "too many redirects (more than " +
                                            std::to_string(o.max_redirs) + ")"};
            }
            if (o.verbose) log_line("* Following redirect to " + hop.redirect->to_string());
            url = *hop.redirect;
            continue;
        }
        if (o.fail && hop.head.status >= 400) {
            throw Failure{http_failure, "the server answered " + std::to_string(hop.head.status) +
                                            (hop.head.reason.empty() ? "" : " " + hop.head.reason)};
        }
        out.finish();
        return ok;
    }
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"http-get: fetch one http:// URL over a raw socket; the body goes to stdout"};
    app.add_option("URL", o.url, "http://HOST[:PORT]/PATH?QUERY (IPv6: http://[::1]:8080/)")
        ->required();
    app.add_flag("-i,--include", o.include, "Print the response headers too");
    app.add_flag("-I,--head", o.head, "Send HEAD and print the headers only");
    app.add_option("-o,--output", o.output, "Write the body to FILE instead of stdout");
    app.add_flag("-L,--location", o.location, "Follow redirects (3xx with Location)");
    app.add_option("--max-redirs", o.max_redirs, "Most redirects -L follows")
        ->check(CLI::Range(0, 1000))
        ->capture_default_str();
    app.add_option("-m,--timeout", o.timeout, "Seconds for the whole transfer")
        ->check(CLI::Range(0.001, 86400.0))
        ->capture_default_str();
    app.add_option("--connect-timeout", o.connect_timeout, "Seconds for each connect")
        ->check(CLI::Range(0.001, 3600.0))
        ->capture_default_str();
    app.add_flag("-v,--verbose", o.verbose, "Request and response headers on stderr");
    app.add_flag("-f,--fail", o.fail, "Exit 7, printing nothing, on a status >= 400");
    app.add_option("-A,--user-agent", o.user_agent, "User-Agent header")->capture_default_str();
    iolab::setup_program(app, "http-get", kExitCodes);
    IOLAB_PARSE(app, argc, argv);
    ignore_sigpipe();
    try {
        return run(o);
    } catch (const Failure& f) {
        log_line("http-get: " + f.message);
        return f.code;
    } catch (const std::exception& e) {
        log_line(std::string("http-get: ") + e.what());
        return internal;
    }
}
