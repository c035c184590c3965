// Unit tests of common/http: the incremental response parser and the URL parser.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/http.hpp"

using namespace iolab::http;

namespace {

// Feeds `data` in pieces of `step` bytes; returns the bytes used in total.
std::size_t feed_in_steps(ResponseParser& p, std::string_view data, std::size_t step) {
    std::size_t used = 0;
    while (used < data.size() && !p.done() && !p.failed()) {
        std::size_t n = std::min(step, data.size() - used);
        std::size_t u = p.feed(data.substr(used, n));
        used += u;
        if (u < n) break;
    }
    return used;
}

ResponseParser parse_all(std::string_view data, bool eof = false, Limits limits = {}) {
    ResponseParser p(limits);
    std::size_t used = p.feed(data);
    if (!p.done() && !p.failed()) CHECK(used == data.size());
    if (eof) p.feed_eof();
    return p;
}

const std::string kChunked =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: chunked\r\n"
    "X-Test: a b  \r\n"
    "\r\n"
    "5;name=value;q=\"x y\"\r\nhello\r\n"
    "1\r\n,\r\n"
    "A \r\n 0123456\r\n\r\n"
    "0\r\n"
    "Trail: yes\r\n"
    "\r\n";

}  // namespace

TEST_CASE("Content-Length body, then the next message is left untouched", "[http]") {
    std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello";
    std::string second = "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop";
    std::string both = first + second;
    ResponseParser p;
    std::size_t used = p.feed(both);
    REQUIRE(p.done());
    CHECK(used == first.size());
    CHECK(p.response().status == 200);
    CHECK(p.response().reason == "OK");
    CHECK(p.response().body == "hello");
    CHECK(p.framing() == Framing::content_length);
    CHECK(p.content_length() == 5u);
    CHECK(p.keep_alive());
    CHECK(p.response().head_bytes == first.size() - 5);
    CHECK(p.feed(both.substr(used)) == 0);  // a finished parser takes nothing
    p.reset();
    CHECK(p.feed(std::string_view(both).substr(used)) == second.size());
    REQUIRE(p.done());
    CHECK(p.response().status == 404);
    CHECK(p.response().reason == "Not Found");
    CHECK(p.response().body == "nop");
}

TEST_CASE("header names are case-insensitive, values trimmed, order kept", "[http]") {
    auto p = parse_all(
        "HTTP/1.1 200 OK\r\nX-One:  1 \r\nx-one: 2\r\nCONTENT-length: 0\r\nEmpty:\r\n\r\n");
    REQUIRE(p.done());
    const Headers& h = p.response().headers;
    CHECK(h.size() == 4);
    CHECK(h.get("x-ONE") == std::string_view("1"));
    CHECK(h.get_all("X-One") == std::vector<std::string_view>{"1", "2"});
    CHECK(h.get("empty") == std::string_view(""));
    CHECK_FALSE(h.get("missing"));
    CHECK(h.fields()[0].name == "X-One");
    CHECK(p.response().body.empty());
}

TEST_CASE("chunked body with extensions and trailers", "[http]") {
    std::string data = kChunked + "HTTP/1.1 200 OK\r\n";  // a pipelined next message
    ResponseParser p;
    std::size_t used = p.feed(data);
    REQUIRE(p.done());
    CHECK(used == kChunked.size());
    CHECK(p.framing() == Framing::chunked);
    CHECK(p.response().body == "hello, 0123456\r\n");
    CHECK(p.body_bytes() == 16);
    CHECK(p.response().headers.get("x-test") == std::string_view("a b"));
    CHECK(p.response().trailers.get("trail") == std::string_view("yes"));
    CHECK(p.keep_alive());
}

TEST_CASE("every split point of a sample response gives the same result", "[http]") {
    for (const std::string& sample :
         {kChunked, std::string("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")}) {
        ResponseParser whole;
        REQUIRE(whole.feed(sample) == sample.size());
        REQUIRE(whole.done());
        for (std::size_t cut = 0; cut <= sample.size(); ++cut) {
            ResponseParser p;
            std::size_t a = p.feed(std::string_view(sample).substr(0, cut));
            CHECK(a == cut);
            std::size_t b = p.feed(std::string_view(sample).substr(cut));
            CHECK(a + b == sample.size());
            REQUIRE(p.done());
            CHECK(p.response().body == whole.response().body);
            CHECK(p.response().headers.size() == whole.response().headers.size());
            CHECK(p.response().trailers.size() == whole.response().trailers.size());
        }
        // And every pair of split points.
        for (std::size_t i = 0; i <= sample.size(); i += 3) {
            for (std::size_t j = i; j <= sample.size(); j += 5) {
                ResponseParser p;
                std::string_view s = sample;
                std::size_t u =
                    p.feed(s.substr(0, i)) + p.feed(s.substr(i, j - i)) + p.feed(s.substr(j));
                CHECK(u == sample.size());
                REQUIRE(p.done());
                CHECK(p.response().body == whole.response().body);
            }
        }
        // One byte at a time.
        ResponseParser p;
        CHECK(feed_in_steps(p, sample, 1) == sample.size());
        REQUIRE(p.done());
        CHECK(p.response().body == whole.response().body);
    }
}

TEST_CASE("body to the connection's close", "[http]") {
    ResponseParser p;
    p.feed("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nabc");
    CHECK_FALSE(p.done());
    CHECK(p.framing() == Framing::until_close);
    p.feed("def");
    p.feed_eof();
    REQUIRE(p.done());
    CHECK(p.response().body == "abcdef");
    CHECK_FALSE(p.keep_alive());

    // A transfer coding other than chunked also runs to the close.
    auto q = parse_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", true);
    REQUIRE(q.done());
    CHECK(q.framing() == Framing::until_close);
    CHECK(q.response().body == "zz");
}

TEST_CASE("HEAD, 1xx, 204 and 304 responses have no body", "[http]") {
    SECTION("HEAD") {
        ResponseParser p;
        p.set_head_request(true);
        std::string r = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        CHECK(p.feed(r + "HTTP/1.1") == r.size());
        REQUIRE(p.done());
        CHECK(p.framing() == Framing::none);
        CHECK(p.content_length() == std::nullopt);
        CHECK(p.keep_alive());
        p.reset();
        p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        CHECK(p.done());  // HEAD stays set across reset
    }
    for (int code : {204, 304}) {
        std::string r = "HTTP/1.1 " + std::to_string(code) + " X\r\nContent-Length: 7\r\n\r\n";
        ResponseParser p;
        CHECK(p.feed(r + "garbage") == r.size());
        REQUIRE(p.done());
        CHECK(p.response().status == code);
        CHECK(p.response().body.empty());
    }
    SECTION("interim 100 Continue is skipped") {
        std::string r =
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        ResponseParser p;
        CHECK(feed_in_steps(p, r, 7) == r.size());
        REQUIRE(p.done());
        CHECK(p.response().status == 200);
        CHECK(p.response().body == "ok");
        CHECK(p.interim_skipped() == 2);
        CHECK_FALSE(p.response().headers.has("Link"));
    }
    SECTION("interim delivered on request") {
        ResponseParser p;
        p.set_skip_interim(false);
        std::string r = "HTTP/1.1 100 Continue\r\n\r\n";
        CHECK(p.feed(r + "HTTP/1.1 200 OK\r\n") == r.size());
        REQUIRE(p.done());
        CHECK(p.response().status == 100);
    }
}

TEST_CASE("keep-alive follows the version and Connection", "[http]") {
    CHECK_FALSE(parse_all("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .keep_alive());
    CHECK_FALSE(parse_all("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive());
    CHECK(parse_all("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
              .keep_alive());
    CHECK(parse_all("HTTP/1.1 200 OK\r\nConnection: foo, keep-alive\r\nContent-Length: 0\r\n\r\n")
              .keep_alive());
    CHECK_FALSE(
        parse_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n").keep_alive());  // not done
}

TEST_CASE("status lines", "[http]") {
    auto ok = parse_all("HTTP/1.1 599\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(ok.done());
    CHECK(ok.response().status == 599);
    CHECK(ok.response().reason.empty());
    auto bare_lf = parse_all("HTTP/1.0 200 Fine thanks\nContent-Length: 1\n\nx");
    REQUIRE(bare_lf.done());
    CHECK(bare_lf.response().reason == "Fine thanks");
    CHECK(bare_lf.response().version_minor == 0);

    struct Bad {
        const char* text;
        Error error;
    };
    for (Bad b : {Bad{"HTTP/1.1 20 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/1.1 2000 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/1.1 099 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/1.1 abc OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/1.1  200 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/11 200 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/2.0 200 OK\r\n\r\n", Error::bad_version},
                  Bad{"HTTP/1.1 200 O\x01K\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/1.1 200 O\rK\r\n\r\n", Error::bad_status_line},
                  Bad{"SSH-2.0-OpenSSH\r\n", Error::bad_status_line},
                  Bad{"http/1.1 200 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"\r\nHTTP/1.1 200 OK\r\n\r\n", Error::bad_status_line},
                  Bad{"HTTP/1.1 101 Switching Protocols\r\n\r\n", Error::protocol_switch}}) {
        INFO(b.text);
        auto p = parse_all(b.text);
        REQUIRE(p.failed());
        CHECK(p.error() == b.error);
        CHECK_FALSE(p.error_message().empty());
    }
    // Garbage is refused at its first byte, not after a full line.
    ResponseParser g;
    CHECK(g.feed("X") == 1);
    CHECK(g.failed());
    CHECK(g.error() == Error::bad_status_line);
}

TEST_CASE("malformed header fields", "[http]") {
    struct Bad {
        const char* header;
        Error error;
    };
    for (Bad b :
         {Bad{"NoColon\r\n", Error::bad_header}, Bad{"Bad Name: x\r\n", Error::bad_header},
          Bad{"Name : x\r\n", Error::bad_header}, Bad{": empty name\r\n", Error::bad_header},
          Bad{"X: a\x01"
              "b\r\n",
              Error::bad_header},
          Bad{"X: a\rb\r\n", Error::bad_header}, Bad{"X: a\r\n  folded\r\n", Error::folded_header},
          Bad{"X: a\r\n\tfolded\r\n", Error::folded_header},
          Bad{" Leading: space\r\n", Error::folded_header}}) {
        INFO(b.header);
        auto p = parse_all(std::string("HTTP/1.1 200 OK\r\n") + b.header + "\r\nbody");
        REQUIRE(p.failed());
        CHECK(p.error() == b.error);
    }
    // A NUL byte in a value.
    auto nul = parse_all(std::string("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", 27));
    REQUIRE(nul.failed());
    CHECK(nul.error() == Error::bad_header);
}

TEST_CASE("Content-Length errors", "[http]") {
    for (const char* cl :
         {"Content-Length: -1\r\n", "Content-Length: 1x\r\n", "Content-Length: \r\n",
          "Content-Length: +5\r\n", "Content-Length: 0x10\r\n",
          "Content-Length: 99999999999999999999\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n",
          "Content-Length: 5, 6\r\n", "Content-Length: ,\r\n"}) {
        INFO(cl);
        auto p = parse_all(std::string("HTTP/1.1 200 OK\r\n") + cl + "\r\nhello");
        REQUIRE(p.failed());
        CHECK(p.error() == Error::bad_content_length);
    }
    // Equal repeated values are accepted.
    auto same =
        parse_all("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello");
    REQUIRE(same.done());
    CHECK(same.response().body == "hello");
    // Both framings at once: refused.
    auto both = parse_all(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    REQUIRE(both.failed());
    CHECK(both.error() == Error::bad_transfer_encoding);
}

TEST_CASE("Transfer-Encoding errors", "[http]") {
    for (const char* te : {"Transfer-Encoding: chunked, chunked\r\n",
                           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                           "Transfer-Encoding: chunked, gzip\r\n", "Transfer-Encoding: ,\r\n"}) {
        INFO(te);
        auto p = parse_all(std::string("HTTP/1.1 200 OK\r\n") + te + "\r\n0\r\n\r\n");
        REQUIRE(p.failed());
        CHECK(p.error() == Error::bad_transfer_encoding);
    }
    auto gz = parse_all(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n");
    REQUIRE(gz.done());
    CHECK(gz.framing() == Framing::chunked);
    CHECK(gz.response().body == "ab");
}

TEST_CASE("malformed chunks", "[http]") {
    const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct Bad {
        const char* body;
        Error error;
    };
    for (Bad b :
         {Bad{"xyz\r\n", Error::bad_chunk}, Bad{"\r\n", Error::bad_chunk},
          Bad{"-1\r\n", Error::bad_chunk}, Bad{"5 x\r\nhello\r\n", Error::bad_chunk},
          Bad{"5\r\nhelloXX\r\n0\r\n\r\n", Error::bad_chunk},
          Bad{"5\r\nhello\r\r\n", Error::bad_chunk}, Bad{"5;a\x01\r\nhello\r\n", Error::bad_chunk},
          Bad{"0\r\nbad trailer\r\n\r\n", Error::bad_header},
          Bad{"0\r\nT: 1\r\n folded\r\n\r\n", Error::folded_header},
          Bad{"11111111111111111\r\n", Error::chunk_too_large},
          Bad{"FFFFFFFFFFFFFFFF\r\n", Error::chunk_too_large},
          Bad{"40000001\r\n", Error::chunk_too_large}}) {
        INFO(b.body);
        auto p = parse_all(head + b.body);
        REQUIRE(p.failed());
        CHECK(p.error() == b.error);
    }
    // Leading zeros and upper-case hex are fine.
    auto p = parse_all(head + "000A\r\n0123456789\r\n0\r\n\r\n");
    REQUIRE(p.done());
    CHECK(p.response().body == "0123456789");
}

TEST_CASE("hard limits give clear errors", "[http]") {
    SECTION("a header line of more than 8 KiB") {
        std::string exact = "X: " + std::string(8192 - 3, 'a');
        auto ok = parse_all("HTTP/1.1 200 OK\r\n" + exact + "\r\nContent-Length: 0\r\n\r\n");
        CHECK(ok.done());
        std::string over = "X: " + std::string(8192 - 2, 'a');
        ResponseParser p;
        std::string r = "HTTP/1.1 200 OK\r\n" + over + "\r\n\r\n";
        feed_in_steps(p, r, 100);
        REQUIRE(p.failed());
        CHECK(p.error() == Error::line_too_long);
        CHECK(p.error_message().find("8192") != std::string::npos);
        // The error comes before the line ends: memory stays bounded.
        ResponseParser q;
        std::string endless = "HTTP/1.1 200 OK\r\nX: " + std::string(20000, 'b');
        feed_in_steps(q, endless, 1000);
        CHECK(q.failed());
        CHECK(q.error() == Error::line_too_long);
    }
    SECTION("an endless status line") {
        ResponseParser p;
        p.feed("HTTP/1.1 200 " + std::string(9000, 'x'));
        CHECK(p.error() == Error::line_too_long);
        CHECK(p.error_message().find("status line") != std::string::npos);
    }
    SECTION("100 header fields, not 101") {
        std::string h100, h101;
        for (int i = 0; i < 100; ++i)
            h100 += "H" + std::to_string(i) + ": v\r\n";
        h101 = h100 + "Extra: v\r\n";
        CHECK(parse_all("HTTP/1.1 204 No\r\n" + h100 + "\r\n").done());
        auto p = parse_all("HTTP/1.1 204 No\r\n" + h101 + "\r\n");
        REQUIRE(p.failed());
        CHECK(p.error() == Error::too_many_headers);
    }
    SECTION("trailers are bounded too") {
        std::string t;
        for (int i = 0; i < 101; ++i)
            t += "T: v\r\n";
        auto p =
            parse_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + t + "\r\n");
        REQUIRE(p.failed());
        CHECK(p.error() == Error::too_many_headers);
    }
    SECTION("body limit") {
        Limits l;
        l.max_body = 10;
        auto cl = parse_all("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", false, l);
        CHECK(cl.error() == Error::body_too_large);
        auto ch = parse_all(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n"
            "6\r\nabcdef\r\n",
            false, l);
        CHECK(ch.error() == Error::body_too_large);
        auto cl10 = parse_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false, l);
        CHECK(cl10.done());
        auto close = parse_all("HTTP/1.1 200 OK\r\n\r\n01234567890", false, l);
        CHECK(close.error() == Error::body_too_large);
    }
    SECTION("too many interim responses") {
        std::string r;
        for (int i = 0; i < 20; ++i)
            r += "HTTP/1.1 100 Continue\r\n\r\n";
        auto p = parse_all(r);
        CHECK(p.failed());
    }
}

TEST_CASE("truncated and empty responses", "[http]") {
    struct Case {
        std::string text;
        Error error;
    };
    for (const Case& c :
         {Case{"", Error::empty_response}, Case{"HTT", Error::truncated},
          Case{"HTTP/1.1 200 OK\r\nX: y", Error::truncated},
          Case{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", Error::truncated},
          Case{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe", Error::truncated},
          Case{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", Error::truncated}}) {
        INFO(c.text);
        auto p = parse_all(c.text, true);
        REQUIRE(p.failed());
        CHECK(p.error() == c.error);
    }
    auto p = parse_all("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true);
    CHECK(p.error_message() == "connection closed after 3 of 5 body bytes");
}

TEST_CASE("callbacks: head first, then the body in pieces, not accumulated", "[http]") {
    ResponseParser p;
    std::vector<std::string> events;
    p.on_head([&](const Response& r) { events.push_back("head " + std::to_string(r.status)); });
    std::string body;
    p.on_body([&](std::string_view piece) { body.append(piece); });
    CHECK(feed_in_steps(p, kChunked, 4) == kChunked.size());
    REQUIRE(p.done());
    CHECK(events == std::vector<std::string>{"head 200"});
    CHECK(body == "hello, 0123456\r\n");
    CHECK(p.response().body.empty());
    CHECK(p.head_complete());
}

TEST_CASE("URL parsing", "[http][url]") {
    Url u = parse_url("http://Example.COM:8080/a/b?x=1#frag");
    CHECK(u.scheme == "http");
    CHECK(u.host == "example.com");
    CHECK(u.port == 8080);
    CHECK(u.explicit_port);
    CHECK(u.target == "/a/b?x=1");
    CHECK(u.path() == "/a/b");
    CHECK(u.authority() == "example.com:8080");
    CHECK(u.to_string() == "http://example.com:8080/a/b?x=1");

    Url d = parse_url("HTTP://host");
    CHECK(d.port == 80);
    CHECK(d.target == "/");
    CHECK(d.authority() == "host");
    CHECK(parse_url("http://host:80/").authority() == "host");
    CHECK(parse_url("http://host?q").target == "/?q");
    CHECK(parse_url("http://host:/x").port == 80);

    Url v6 = parse_url("http://[::1]:9000/p");
    CHECK(v6.host == "::1");
    CHECK(v6.ipv6_literal());
    CHECK(v6.port == 9000);
    CHECK(v6.authority() == "[::1]:9000");
    CHECK(parse_url("http://[2001:DB8::1]/").host == "2001:db8::1");
    CHECK(parse_url("https://h/").port == 443);
    CHECK(parse_url("http://h/a b").target == "/a%20b");

    for (const char* bad :
         {"", "host/path", "ftp://h/", "http://", "http:///x", "http://h:0/", "http://h:65536/",
          "http://h:12x/", "http://[::1/", "http://[zz]/", "http://[::1]x/", "http://u@h/",
          "http://h^st/", "http://h/\x01", "://h/"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_url(bad), UrlError);
    }
}

TEST_CASE("URL references resolve against a base", "[http][url]") {
    Url base = parse_url("http://h:81/a/b/c?q=1");
    auto r = [&](const char* ref) { return resolve_url(base, ref).to_string(); };
    CHECK(r("d") == "http://h:81/a/b/d");
    CHECK(r("./d") == "http://h:81/a/b/d");
    CHECK(r("../d") == "http://h:81/a/d");
    CHECK(r("../../../../d") == "http://h:81/d");
    CHECK(r("/x/./y/../z") == "http://h:81/x/z");
    CHECK(r("?p=2") == "http://h:81/a/b/c?p=2");
    CHECK(r("") == "http://h:81/a/b/c?q=1");
    CHECK(r("#top") == "http://h:81/a/b/c?q=1");
    CHECK(r("d?e#f") == "http://h:81/a/b/d?e");
    CHECK(r("//other/x") == "http://other/x");
    CHECK(r("http://[::1]:5/z") == "http://[::1]:5/z");
    CHECK(r("  /spaced  ") == "http://h:81/spaced");
    CHECK(r("..") == "http://h:81/a/");
    CHECK_THROWS_AS(resolve_url(base, "mailto:x@y"), UrlError);
    CHECK_THROWS_AS(resolve_url(base, "javascript:void(0)"), UrlError);
}

TEST_CASE("response_framing decides the body's framing on its own", "[http]") {
    using namespace iolab::http;
    auto decide = [](std::vector<std::pair<std::string, std::string>> fields, int status = 200,
                     bool head = false) {
        Headers h;
        for (auto& [n, v] : fields)
            h.add(n, v);
        return response_framing(h, status, head, 1000);
    };
    CHECK(decide({}).framing == Framing::until_close);
    CHECK(decide({{"Content-Length", "5"}}, 204).framing == Framing::none);
    CHECK(decide({{"Content-Length", "5"}}, 200, true).framing == Framing::none);
    auto cl = decide({{"Content-Length", "42, 42"}, {"content-length", "42"}});
    CHECK(cl.framing == Framing::content_length);
    CHECK(cl.length == 42u);
    CHECK(decide({{"Content-Length", "1"}, {"Content-Length", "2"}}).error ==
          Error::bad_content_length);
    CHECK(decide({{"Content-Length", "+1"}}).error == Error::bad_content_length);
    CHECK(decide({{"Content-Length", "1001"}}).error == Error::body_too_large);
    CHECK(decide({{"Transfer-Encoding", "gzip, chunked"}}).framing == Framing::chunked);
    CHECK(decide({{"Transfer-Encoding", "gzip"}}).framing == Framing::until_close);
    CHECK(decide({{"Transfer-Encoding", "chunked, gzip"}}).error == Error::bad_transfer_encoding);
    CHECK(decide({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}).error ==
          Error::bad_transfer_encoding);
    auto both = decide({{"Transfer-Encoding", "chunked"}, {"Content-Length", "3"}});
    CHECK(both.error == Error::bad_transfer_encoding);
    CHECK(!both.message.empty());
}
