// loop-fetch, callback style: the course notes' Fetcher (11.3) in C++.
//
// One HTTP GET is chopped into handlers, one per thing it waits for, and the
// loop calls whichever one its descriptor is ready for — the notes'
// `selector.register(fd, EVENT_WRITE, self.connected)` is
// `loop.add_writer(fd, [this] { connected(); })`:
//
//   start ─▶ resolved ─▶ connect(2) EINPROGRESS ─▶ add_writer(connected)
//   connected ─▶ SO_ERROR, send ─▶ (rest? add_writer(sending)) ─▶ add_reader(readable)
//   readable ─▶ recv, feed the parser ─▶ ... ─▶ finish
//   call_later(timeout) ─▶ timed_out ─▶ finish
//
// What the notes call the pain of callbacks (11.4) shows here: the request's
// state has to live in the object (the socket, the bytes left to send, the
// parser, the timer), every handler begins by working out where it is, and an
// error anywhere must be routed to finish() by hand. fetch_coroutines.cpp is
// the same work as straight-line code.

#include <sys/socket.h>

#include <algorithm>
#include <memory>

#include "common/error.hpp"
#include "common/io.hpp"
#include "labs/06-event-loop/fetch_common.hpp"

namespace fetch {

using evloop::EventLoop;
using iolab::IoResult;

namespace {

class Fetcher {
  public:
    Fetcher(EventLoop& loop, iolab::http::Url url, const Options& opts,
            std::function<void(Result)> done)
        : loop_(loop),
          url_(std::move(url)),
          opts_(opts),
          done_(std::move(done)),
          parser_(make_parser(opts)) {
        result_.url = url_.to_string();
    }

    void start() {
        timer_ = loop_.call_later(opts_.timeout_ms(), [this] { finish(timeout_message(opts_)); });
        resolving_ = resolve_async(loop_, url_);
        resolve_cb_ = resolving_->add_done_callback([this] {
            resolve_cb_ = 0;
            resolved();
        });
    }

  private:
    void resolved() {
        try {
            addr_ = resolving_->result();
            peer_ = addr_.to_string();
            sock_ = evloop::WatchedFd(loop_, new_socket(addr_));
        } catch (const std::exception& e) {
            return finish(e.what());
        }
        // Non-blocking connect: returns at once; writable means "finished".
        if (::connect(sock_.get(), addr_.get(), addr_.len) == 0) return connected();
        if (errno != EINPROGRESS && errno != EINTR)
            return finish(iolab::sys_message("connect", peer_, errno));
        loop_.add_writer(sock_.get(), [this] { connected(); });
    }

    void connected() {
        loop_.remove_writer(sock_.get());
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(sock_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) return finish(iolab::sys_message("connect", peer_, err));
        request_ = iolab::http::build_request("GET", url_, opts_.user_agent);
        sending();
    }

    void sending() {
        IoResult w = iolab::write_some(sock_.get(), std::string_view(request_).substr(sent_));
        sent_ += w.bytes;
        if (w.error()) return finish(w.describe("write", peer_));
        if (w.would_block()) {  // the send buffer is full: come back when it is not
            loop_.add_writer(sock_.get(), [this] { sending(); });
            return;
        }
        loop_.remove_writer(sock_.get());
        loop_.add_reader(sock_.get(), [this] { readable(); });
    }

    void readable() {
        char buf[16384];
        IoResult r = iolab::read_some(sock_.get(), buf);
        if (r.would_block()) return;  // a stale report: wait again
        if (r.error()) return finish(r.describe("read", peer_));
        if (r.eof())
            parser_.feed_eof();
        else
            parser_.feed(std::string_view(buf, r.bytes));
        if (parser_.failed())
            return finish("response from " + peer_ + ": " + parser_.error_message());
        if (!parser_.done()) return;  // more to come: the reader stays registered
        take_response(parser_, result_);
        finish("");
    }

    // The one exit: every path above must end here exactly once.
    void finish(std::string error) {
        if (finished_) return;
        finished_ = true;
        timer_.cancel();
        if (resolve_cb_) resolving_->remove_done_callback(resolve_cb_);  // still resolving
        sock_.close();  // leaves the interest set, then close(2)
        result_.error = std::move(error);
        done_(std::move(result_));  // may destroy *this: nothing after it
    }

    EventLoop& loop_;
    iolab::http::Url url_;
    const Options& opts_;
    std::function<void(Result)> done_;
    std::optional<evloop::Future<iolab::SockAddr>> resolving_;
    uint64_t resolve_cb_ = 0;
    iolab::SockAddr addr_;
    std::string peer_;
    evloop::WatchedFd sock_;
    std::string request_;
    std::size_t sent_ = 0;
    iolab::http::ResponseParser parser_;
    evloop::Handle timer_;
    Result result_;
    bool finished_ = false;
};

}  // namespace

// Starts up to `concurrency` fetchers; each one that finishes starts the next.
std::vector<Result> fetch_all_callbacks(EventLoop& loop, const std::vector<iolab::http::Url>& urls,
                                        const Options& opts) {
    std::vector<Result> results(urls.size());
    std::vector<std::unique_ptr<Fetcher>> fetchers(urls.size());
    std::size_t next = 0, finished = 0;
    std::function<void()> start_next = [&] {
        const std::size_t i = next++;
        fetchers[i] = std::make_unique<Fetcher>(loop, urls[i], opts, [&, i](Result r) {
            results[i] = std::move(r);
            // Not here: we are inside fetchers[i]'s own handler. Next round.
            loop.call_soon([&, i] { fetchers[i].reset(); });
            if (++finished == urls.size()) loop.stop();
            if (next < urls.size()) start_next();
        });
        fetchers[i]->start();
    };
    while (next < urls.size() && next < opts.concurrency)
        start_next();
    if (!urls.empty()) loop.run_forever();
    auto alive = [&] {
        return std::any_of(fetchers.begin(), fetchers.end(), [](auto& f) { return f != nullptr; });
    };
    while (alive())
        loop.run_once();  // the last resets
    return results;
}

}  // namespace fetch
