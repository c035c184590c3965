// libFuzzer target for common/http: the response parser and the URL parser.
//
// The input's first byte picks options (HEAD request, body sink, split
// pattern, tight limits); the rest is fed to the parser split at points
// derived from the same byte, then fed again in one piece: both runs must
// agree (done / failed / error, body, bytes used), the parser must never
// report using more bytes than it was given, and keep-alive leftovers must
// parse as a fresh message after reset(). The URL parser and resolver get the
// same bytes as text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/http.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

struct Outcome {
    bool done = false, failed = false;
    iolab::http::Error error = iolab::http::Error::none;
    std::string body;
    std::size_t used = 0;
    int status = 0;
};

Outcome parse(std::string_view data, uint8_t flags, std::size_t step) {
    iolab::http::Limits limits;
    if (flags & 4) {
        limits.max_line = 64;
        limits.max_headers = 4;
        limits.max_chunk = 100;
        limits.max_body = 1000;
    }
    iolab::http::ResponseParser p(limits);
    p.set_head_request(flags & 1);
    p.set_keep_raw_head(flags & 8);
    Outcome o;
    std::string sunk;
    if (flags & 2) p.on_body([&](std::string_view piece) { sunk.append(piece); });
    while (o.used < data.size() && !p.done() && !p.failed()) {
        std::size_t n = std::min(step, data.size() - o.used);
        std::size_t u = p.feed(data.substr(o.used, n));
        check(u <= n);
        o.used += u;
        if (u < n) check(p.done() || p.failed());
    }
    if (flags & 16) p.feed_eof();
    o.done = p.done();
    o.failed = p.failed();
    check(!(o.done && o.failed));
    o.error = p.error();
    if (o.failed) check(!p.error_message().empty());
    o.body = (flags & 2) ? sunk : p.response().body;
    check(o.body.size() == p.body_bytes());
    check(o.body.size() <= limits.max_body);
    check(p.response().headers.size() <= limits.max_headers);
    o.status = p.response().status;
    if (o.done && !(flags & 16) && p.keep_alive() && o.used < data.size()) {
        // Keep-alive: the rest is the next message.
        p.reset();
        std::size_t u = p.feed(data.substr(o.used));
        check(u <= data.size() - o.used);
    }
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const uint8_t flags = data[0];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::size_t step = 1 + (flags >> 5) * 3;  // 1, 4, 7, ... 22 bytes per feed

    Outcome split = parse(input, flags, step);
    Outcome whole = parse(input, flags, input.size() + 1);
    check(split.done == whole.done);
    check(split.failed == whole.failed);
    if (!split.failed) {
        check(split.body == whole.body);
        check(split.used == whole.used);
        check(split.status == whole.status);
    }

    try {
        iolab::http::Url u = iolab::http::parse_url(input);
        check(!u.host.empty());
        check(!u.target.empty() && u.target[0] == '/');
        iolab::http::Url again = iolab::http::parse_url(u.to_string());
        check(again.to_string() == u.to_string());
        iolab::http::Url r = iolab::http::resolve_url(u, input.substr(input.size() / 2));
        check(!r.target.empty() && r.target[0] == '/');
    } catch (const iolab::http::UrlError&) {
    }
    return 0;
}
