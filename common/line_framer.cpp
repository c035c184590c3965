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
            // A line's "\r" terminator may be its last byte past the limit, so
            // count the limit on the line without it when the line completes.
            std::size_t room = partial_.size() >= max_line_ ? 0 : max_line_ - partial_.size();
            std::string_view body = piece;
            if (complete && !body.empty() && body.back() == '\r') body.remove_suffix(1);
            if (complete && body.size() <= room) {
                if (partial_.empty()) {
                    on_line(body);
                } else {
                    partial_.append(body);
                    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
                    on_line(partial_);
                    partial_.clear();
                }
                continue;
            }
            // An unfinished line may hold one byte more than the limit when that
            // byte is the "\r" of a "\r\n" split across two reads.
            if (!complete &&
                (piece.size() <= room || (piece.size() == room + 1 && piece.back() == '\r'))) {
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
