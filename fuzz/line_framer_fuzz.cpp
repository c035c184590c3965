// libFuzzer target for common/line_framer: LineFramer fed arbitrary bytes.
//
// The first byte picks the maximum line length (1..64) and how the rest is cut
// into feeds. The same bytes fed whole and fed in pieces must give the same
// events (lines and overflows, in order); no line may hold a "\n" or pass the
// limit; the framer never holds more than max_line + 1 bytes; a stream with no
// overflow gives back exactly its lines.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/line_framer.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

std::vector<std::string> frame(std::string_view data, std::size_t max_line, std::size_t step) {
    iolab::LineFramer f(max_line);
    std::vector<std::string> events;
    auto on_line = [&](std::string_view line) {
        check(line.size() <= max_line);
        check(line.find('\n') == std::string_view::npos);
        events.emplace_back("L" + std::string(line));
    };
    auto on_overflow = [&] { events.emplace_back("O"); };
    for (std::size_t at = 0; at < data.size(); at += step) {
        f.feed(data.substr(at, step), on_line, on_overflow);
        check(f.buffered() <= max_line + 1);
    }
    return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t max_line = 1 + (data[0] & 63);
    const std::size_t step = 1 + (data[0] >> 6) * 5;  // 1, 6, 11 or 16 bytes a feed
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

    auto whole = frame(input, max_line, input.size() + 1);
    auto split = frame(input, max_line, step);
    check(whole == split);

    // Without an overflow, the lines are the input's lines ("\r\n" or "\n").
    bool overflow = false;
    for (const auto& e : whole)
        overflow |= e == "O";
    if (!overflow) {
        std::vector<std::string> expect;
        std::size_t start = 0;
        for (std::size_t nl = input.find('\n'); nl != std::string_view::npos;
             nl = input.find('\n', start)) {
            std::string_view line = input.substr(start, nl - start);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            expect.emplace_back("L" + std::string(line));
            start = nl + 1;
        }
        check(whole == expect);
    }
    return 0;
}
