// The blocking modes: --mode sequential (one fetch after another) and
// --mode threads (a pool of threads, each making the same blocking calls; a
// counting semaphore bounds the requests in flight).
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <semaphore>
#include <thread>

#include "clients/fetcher/fetcher.hpp"
#include "common/address.hpp"
#include "common/error.hpp"
#include "common/socket.hpp"

namespace fetcher {

namespace {

// poll() until `events` or the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        return n > 0;
    }
}

}  // namespace

Result blocking_fetch(const Options& opts, const iolab::http::Url& url) {
    Result r;
    r.url = url.to_string();
    const auto start = Clock::now();
    const auto deadline = start + opts.timeout_ms();
    auto done = [&](std::string error) {
        r.error = std::move(error);
        r.status = 0;
        r.ms = ms_since(start);
        return r;
    };
    if (url.scheme != "http") return done("https:// is outside this lab's scope (no TLS)");

    std::vector<iolab::SockAddr> addrs;
    try {
        addrs = iolab::resolve(url.host, url.port);  // getaddrinfo: blocks this thread only
    } catch (const iolab::AddressError& e) {
        return done(e.what());
    }
    iolab::Fd fd;
    std::string last;
    for (const auto& a : addrs) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        try {
            fd = iolab::connect_tcp(a, left, true);
            break;
        } catch (const iolab::SysError& e) {
            last = e.what();
        }
    }
    if (!fd) return done(last.empty() ? "connect " + url.authority() + ": timed out" : last);

    const std::string peer = url.authority();
    const std::string request = iolab::http::build_request("GET", url, opts.user_agent);
    std::size_t sent = 0;
    while (sent < request.size()) {
        if (!wait_for(fd.get(), POLLOUT, deadline)) return done("send " + peer + ": timed out");
        ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return done(iolab::sys_message("send", peer, errno));
        sent += static_cast<std::size_t>(n);
    }
    auto parser = make_parser(opts);
    std::array<char, 16384> buf;
    while (!parser.done() && !parser.failed()) {
        if (!wait_for(fd.get(), POLLIN, deadline)) return done("recv " + peer + ": timed out");
        ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return done(iolab::sys_message("recv", peer, errno));
        if (n == 0) {
            parser.feed_eof();
        } else {
            parser.feed({buf.data(), static_cast<std::size_t>(n)});
        }
    }
    if (parser.failed()) return done("response from " + peer + ": " + parser.error_message());
    take_response(parser, r);
    r.ms = ms_since(start);
    return r;
}

void run_sequential(const Options& opts, Coordinator& coord) {
    while (auto job = coord.next())
        coord.complete(*job, blocking_fetch(opts, job->url));
}

void run_threads(const Options& opts, Coordinator& coord) {
    // The semaphore is the notes' bound on requests in flight; with fewer
    // threads than --concurrency the pool is the tighter bound.
    std::counting_semaphore<> in_flight(static_cast<std::ptrdiff_t>(opts.concurrency));
    std::vector<std::thread> pool;
    pool.reserve(opts.threads);
    for (std::size_t i = 0; i < opts.threads; ++i) {
        pool.emplace_back([&] {
            while (auto job = coord.next_wait()) {
                in_flight.acquire();
                Result r = blocking_fetch(opts, job->url);
                in_flight.release();
                coord.complete(*job, std::move(r));
            }
        });
    }
    for (auto& t : pool)
        t.join();
}

}  // namespace fetcher
