#include "common/line_framer.hpp"

namespace iolab {

LineFramer::LineFramer(std::size_t max_line) : max_line_(max_line) {
    partial_.reserve(max_line_ < 4096 ? max_line_ : 4096);
}

void LineFramer::feed(std::string_view data, const LineHandler& on_line,
                      const OverflowHandler& on_overflow) {
    while (!data.empty()) {
        auto nl = data.find('\n');
        std::string_view piece = nl == std::string_view::npos ? data : data.substr(0, nl);
        data = nl == std::string_view::npos ? std::string_view{} : data.substr(nl + 1);
        const bool complete = nl != std::string_view::npos;

        if (!discarding_) {
            // The line so far is partial_ then piece. A line's "\r" terminator
            // is its last byte, possibly the held one, and does not count
            // against the limit; an unfinished line may therefore hold one
            // byte past the limit when that byte is a "\r" (its "\n" is
            // still to come).
            const std::size_t len = partial_.size() + piece.size();
            const char last = !piece.empty()     ? piece.back()
                              : partial_.empty() ? '\0'
                                                 : partial_.back();
            if (complete && len - (last == '\r' ? 1 : 0) <= max_line_) {
                if (partial_.empty()) {
                    on_line(last == '\r' ? piece.substr(0, piece.size() - 1) : piece);
                } else {
                    partial_.append(piece);
                    if (partial_.back() == '\r') partial_.pop_back();
                    on_line(partial_);
                    partial_.clear();
                }
                continue;
            }
            if (!complete && (len <= max_line_ || (len == max_line_ + 1 && last == '\r'))) {
                partial_.append(piece);
                continue;
            }
            // Past the limit: report once and drop the line's bytes from here on.
            partial_.clear();
            discarding_ = true;
            on_overflow();
        }
        if (complete) discarding_ = false;  // the overlong line ends here
    }
}

}  // namespace iolab
