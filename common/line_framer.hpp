// LineFramer: splits a byte stream into lines ending in "\n" or "\r\n", with a
// hard maximum line length. Memory never grows past max_line bytes: an
// overlong line is reported once and the rest of it is discarded up to its
// newline.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace iolab {

class LineFramer {
  public:
    // Called with each complete line, without its terminator.
    using LineHandler = std::function<void(std::string_view line)>;
    // Called once per overlong line, when it first passes max_line bytes.
    using OverflowHandler = std::function<void()>;

    explicit LineFramer(std::size_t max_line);

    // Feeds the next bytes of the stream; calls the handlers for every event
    // they complete, in stream order.
    void feed(std::string_view data, const LineHandler& on_line,
              const OverflowHandler& on_overflow);

    // The bytes of an unfinished line held now (at most max_line + 1: a "\r"
    // whose "\n" has not arrived yet may sit past the limit).
    [[nodiscard]] std::size_t buffered() const noexcept { return partial_.size(); }
    [[nodiscard]] bool discarding() const noexcept { return discarding_; }
    [[nodiscard]] std::size_t max_line() const noexcept { return max_line_; }

  private:
    std::size_t max_line_;
    std::string partial_;
    bool discarding_ = false;
};

}  // namespace iolab
