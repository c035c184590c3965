// loop-fetch, coroutine style: the same GET as fetch_callbacks.cpp, written
// as one function that reads top to bottom. Each co_await is a place where
// the callback version ended a handler and registered the next one; the
// request's state (socket, parser, bytes) is just local variables, and an
// error anywhere is an exception that lands in one catch.

#include "common/error.hpp"
#include "labs/06-event-loop/combinators.hpp"
#include "labs/06-event-loop/fetch_common.hpp"

namespace fetch {

using namespace evloop;

namespace {

Task<Result> get(EventLoop& loop, const iolab::http::Url& url, const Options& opts) {
    Result result;
    result.url = url.to_string();
    const iolab::SockAddr addr = co_await resolve_async(loop, url);
    const std::string peer = addr.to_string();
    WatchedFd sock(loop, new_socket(addr));
    co_await sock_connect(loop, sock.get(), addr);

    const std::string request = iolab::http::build_request("GET", url, opts.user_agent);
    iolab::IoResult w = co_await sock_sendall(loop, sock.get(), request);
    if (w.error()) throw std::runtime_error(w.describe("write", peer));

    iolab::http::ResponseParser parser = make_parser(opts);
    std::vector<char> buf(16384);
    while (!parser.done()) {
        iolab::IoResult r = co_await sock_recv(loop, sock.get(), buf);
        if (r.error()) throw std::runtime_error(r.describe("read", peer));
        if (r.eof())
            parser.feed_eof();
        else
            parser.feed(std::string_view(buf.data(), r.bytes));
        if (parser.failed())
            throw std::runtime_error("response from " + peer + ": " + parser.error_message());
    }
    take_response(parser, result);
    co_return result;
}  // `sock` leaves the loop and closes here, on every path

}  // namespace

Task<Result> fetch_one(EventLoop& loop, iolab::http::Url url, const Options& opts) {
    Result failed;
    failed.url = url.to_string();
    try {
        co_return co_await wait_for(loop, get(loop, url, opts), opts.timeout_ms());
    } catch (const TimeoutError&) {
        failed.error = timeout_message(opts);
    } catch (const std::exception& e) {
        failed.error = e.what();
    }
    co_return failed;
}

std::vector<Result> fetch_all_coroutines(EventLoop& loop, const std::vector<iolab::http::Url>& urls,
                                         const Options& opts) {
    AsyncSemaphore slots(loop, opts.concurrency);
    auto limited = [&](const iolab::http::Url& url) -> Task<Result> {
        auto permit = co_await slots.acquire();  // at most `concurrency` inside
        co_return co_await fetch_one(loop, url, opts);
    };
    std::vector<Task<Result>> tasks;
    for (const auto& url : urls)
        tasks.push_back(limited(url));
    return run_until_complete(loop, gather(loop, std::move(tasks)));
}

}  // namespace fetch
