#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/line_framer.hpp"

using iolab::LineFramer;

namespace {
struct Collect {
    std::vector<std::string> lines;
    int overflows = 0;
    void feed(LineFramer& f, std::string_view data) {
        f.feed(
            data, [&](std::string_view l) { lines.emplace_back(l); }, [&] { ++overflows; });
    }
};
}  // namespace

TEST_CASE("LineFramer splits on \\n and \\r\\n in any split", "[framer]") {
    const std::string stream = "one\ntwo\r\n\nthree\r\nfour";
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        LineFramer f(64);
        Collect c;
        c.feed(f, std::string_view(stream).substr(0, cut));
        c.feed(f, std::string_view(stream).substr(cut));
        INFO("cut at " << cut);
        REQUIRE(c.lines == std::vector<std::string>{"one", "two", "", "three"});
        CHECK(c.overflows == 0);
        CHECK(f.buffered() == 4);  // "four" waits for its newline
    }
}

TEST_CASE("LineFramer byte by byte", "[framer]") {
    LineFramer f(8);
    Collect c;
    for (char ch : std::string("ab\r\ncd\nxyz"))
        c.feed(f, std::string_view(&ch, 1));
    CHECK(c.lines == std::vector<std::string>{"ab", "cd"});
}

TEST_CASE("LineFramer reports an overlong line once and keeps memory bounded", "[framer]") {
    LineFramer f(10);
    Collect c;
    c.feed(f, "short\n");
    for (int i = 0; i < 1000; ++i) {
        c.feed(f, std::string(1000, 'x'));  // one megabyte without a newline
        REQUIRE(f.buffered() <= 11);
    }
    CHECK(c.overflows == 1);
    CHECK(f.discarding());
    c.feed(f, "tail of it\nnext\n");
    CHECK(c.lines == std::vector<std::string>{"short", "next"});
    CHECK_FALSE(f.discarding());
}

TEST_CASE("LineFramer's limit is on the line without its terminator", "[framer]") {
    LineFramer f(5);
    Collect c;
    c.feed(f, "12345\r\n123456\n12345\n");
    CHECK(c.lines == std::vector<std::string>{"12345", "12345"});
    CHECK(c.overflows == 1);
    // A line of exactly the limit whose "\r\n" is split across two reads.
    c.feed(f, "abcde\r");
    c.feed(f, "\n");
    CHECK(c.lines.back() == "abcde");
    CHECK(c.overflows == 1);
}
