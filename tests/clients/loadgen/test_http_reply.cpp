// Unit tests of loadgen's HTTP response framer (clients/loadgen/http_reply.hpp):
// framing and errors as common/http frames them, bytes split anywhere, and no
// allocation per response (a counting operator new).
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "clients/loadgen/http_reply.hpp"
#include "common/http.hpp"

namespace {
std::atomic<uint64_t> g_allocations{0};
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOADGEN_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LOADGEN_TEST_ASAN 1
#endif

#ifdef LOADGEN_TEST_ASAN
// Under AddressSanitizer the allocator is ASan's: count through its hooks
// (every malloc and every operator new).
#include <sanitizer/allocator_interface.h>
namespace {
void on_malloc(const volatile void*, std::size_t) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void on_free(const volatile void*) {}
[[maybe_unused]] const int g_hooks = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace
#else
// Every allocation of this test program goes through here.
void* operator new(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return operator new(n);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
#endif

using loadgen::HttpReply;
using Result = HttpReply::Result;
using iolab::http::Error;

namespace {

struct Fed {
    Result result = Result::more;
    std::size_t used = 0;  // bytes of the input that belonged to the response
};

// Feeds `text` in pieces of `piece` bytes (0: all at once) until done or failed.
Fed feed(HttpReply& r, const std::string& text, std::size_t piece = 0, bool eof = false) {
    Fed f;
    std::size_t off = 0;
    while (off < text.size()) {
        const std::size_t n = piece ? std::min(piece, text.size() - off) : text.size() - off;
        std::size_t used = 0;
        f.result = r.feed(std::string_view(text).substr(off, n), used);
        off += used;
        f.used = off;
        if (f.result != Result::more) return f;
        if (used != n) break;
    }
    if (eof) f.result = r.eof();
    return f;
}

int err(Error e) {
    return 1 + static_cast<int>(e);
}

const std::string kLength =
    "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    "ETag: \"5f-1\"\r\n\r\nhello world";
const std::string kChunked =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5;ext=1\r\nhello\r\n"
    "6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";

}  // namespace

TEST_CASE("http framer: Content-Length and chunked, split at every byte", "[unit]") {
    for (const std::string* text : {&kLength, &kChunked}) {
        for (std::size_t piece = 1; piece <= text->size(); ++piece) {
            HttpReply r;
            Fed f = feed(r, *text + "HTTP/1.1 200 OK\r\n", piece);
            INFO(*text << " in pieces of " << piece);
            REQUIRE(f.result == Result::done);
            CHECK(f.used == text->size());  // the next response's bytes stay unused
            CHECK(r.status() == 200);
            CHECK(r.keep_alive());
        }
    }
}

TEST_CASE("http framer: keep-alive, close and bodies without a length", "[unit]") {
    HttpReply r;
    CHECK(feed(r, "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n").result ==
          Result::done);
    CHECK_FALSE(r.keep_alive());
    r.reset();
    CHECK(feed(r, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx").result == Result::done);
    CHECK_FALSE(r.keep_alive());
    r.reset();
    CHECK(
        feed(r, "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\nContent-Length: 1\r\n\r\nx").result ==
        Result::done);
    CHECK(r.keep_alive());
    r.reset();
    // No length: the body runs to the close.
    Fed f = feed(r, "HTTP/1.1 200 OK\r\n\r\nbody until the end");
    CHECK(f.result == Result::more);
    CHECK(r.eof() == Result::done);
    CHECK_FALSE(r.keep_alive());
    r.reset();
    // No body whatever the headers say; an interim 100 is skipped.
    CHECK(feed(r, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").result ==
          Result::done);
    r.reset();
    Fed i = feed(r, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    CHECK(i.result == Result::done);
    CHECK(r.status() == 204);
    r.reset();
    CHECK(feed(r, "HTTP/1.1 200 OK\nContent-Length: 2, 2\n\nok").result == Result::done);
}

TEST_CASE("http framer: errors as common/http names them", "[unit]") {
    const std::vector<std::pair<std::string, Error>> cases = {
        {"HTTX/1.1 200 OK\r\n\r\n", Error::bad_status_line},
        {"HTTP/2.0 200 OK\r\n\r\n", Error::bad_version},
        {"HTTP/1.1 2x0 OK\r\n\r\n", Error::bad_status_line},
        {"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", Error::bad_header},
        {"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", Error::folded_header},
        {"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", Error::bad_content_length},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
         Error::bad_content_length},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         Error::bad_transfer_encoding},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
         Error::bad_transfer_encoding},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Error::bad_chunk},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX", Error::bad_chunk},
        {"HTTP/1.1 101 Switching Protocols\r\n\r\n", Error::protocol_switch},
        {"HTTP/1.1 200 OK\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", Error::line_too_long},
    };
    for (const auto& [text, error] : cases) {
        HttpReply r;
        INFO(text.substr(0, 80));
        CHECK(feed(r, text, 3).result == Result::failed);
        CHECK(r.error_code() == err(error));
    }
    std::string many = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 101; ++i)
        many += "X-" + std::to_string(i) + ": v\r\n";
    HttpReply r;
    CHECK(feed(r, many + "\r\n").result == Result::failed);
    CHECK(r.error_code() == err(Error::too_many_headers));
    r.reset();
    CHECK(r.eof() == Result::failed);
    CHECK(r.error_code() == err(Error::empty_response));
    r.reset();
    CHECK(feed(r, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").result == Result::more);
    CHECK(r.eof() == Result::failed);
    CHECK(r.error_code() == err(Error::truncated));
    CHECK(loadgen::http_error_text(r.error_code()) == "truncated response");
}

TEST_CASE("http framer agrees with common/http on random responses", "[unit]") {
    std::mt19937 rng(42);
    const char* statuses[] = {"200 OK", "404 Not Found", "204 No Content", "500 Oops"};
    for (int i = 0; i < 2000; ++i) {
        std::string head = std::string("HTTP/1.") + (rng() % 4 ? "1 " : "0 ") + statuses[rng() % 4];
        head += "\r\nDate: Tue, 01 Dec 2026 23:00:00 GMT\r\n";
        if (rng() % 3 == 0)
            head += rng() % 2 ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
        std::string body(rng() % 300, 'b');
        std::string text;
        if (rng() % 2) {
            text = head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        } else {
            text = head + "Transfer-Encoding: chunked\r\n\r\n";
            for (std::size_t off = 0; off < body.size(); off += 40) {
                const std::size_t n = std::min<std::size_t>(40, body.size() - off);
                char size[16];
                std::snprintf(size, sizeof size, "%zx", n);
                text += std::string(size) + "\r\n" + body.substr(off, n) + "\r\n";
            }
            text += "0\r\n\r\n";
        }
        text += "HTTP/1.1";  // the start of the next response
        iolab::http::ResponseParser ref;
        ref.on_body([](std::string_view) {});
        const std::size_t ref_used = ref.feed(text);
        HttpReply r;
        Fed f = feed(r, text, 1 + rng() % 64);
        INFO(text);
        REQUIRE(ref.done());
        REQUIRE(f.result == Result::done);
        CHECK(f.used == ref_used);
        CHECK(r.status() == ref.response().status);
        CHECK(r.keep_alive() == ref.keep_alive());
    }
}

TEST_CASE("http framer: no allocation in 10,000 responses", "[unit]") {
    // Responses as nginx sends them for a static file: many header lines.
    const std::string file =
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 23:00:00 GMT\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n"
        "Last-Modified: Tue, 01 Dec 2026 22:00:00 GMT\r\nConnection: keep-alive\r\n"
        "ETag: \"692e1f40-400\"\r\nAccept-Ranges: bytes\r\n\r\n" +
        std::string(1024, 'x');
    const std::string stream = file + kChunked + kLength;  // three responses back to back
    HttpReply r;
    std::size_t done = 0, bytes = 0;
    const uint64_t before = g_allocations.load();
    for (int i = 0; i < 10'000 / 3 + 1; ++i) {
        std::size_t off = 0;
        while (off < stream.size()) {
            // 1460-byte reads, as a TCP segment would bring them
            std::size_t used = 0;
            const std::size_t n = std::min<std::size_t>(1460, stream.size() - off);
            Result res = r.feed(std::string_view(stream).substr(off, n), used);
            off += used;
            bytes += used;
            if (res == Result::done) {
                ++done;
                r.reset();
            } else if (res == Result::failed) {
                break;
            }
        }
    }
    const uint64_t allocations = g_allocations.load() - before;
    CHECK(done == 3 * (10'000 / 3 + 1));
    CHECK(bytes == stream.size() * (10'000 / 3 + 1));
    CHECK(allocations == 0);
    // And the counter counts: the full parser allocates for the same stream.
    const uint64_t before_ref = g_allocations.load();
    iolab::http::ResponseParser ref;
    ref.on_body([](std::string_view) {});
    ref.feed(file);
    CHECK(g_allocations.load() > before_ref);
}
