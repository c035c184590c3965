#include "clients/loadgen/http_reply.hpp"

#include "common/http.hpp"

namespace loadgen {

HttpReply::HttpReply() : parser_(std::make_unique<iolab::http::ResponseParser>()) {
    // Count the body, never keep it: the sink replaces accumulation.
    parser_->on_body([](std::string_view) {});
}

HttpReply::~HttpReply() = default;

HttpReply::Result HttpReply::feed(std::string_view data, std::size_t& used) {
    used = parser_->feed(data);
    if (parser_->failed()) return Result::failed;
    return parser_->done() ? Result::done : Result::more;
}

HttpReply::Result HttpReply::eof() {
    parser_->feed_eof();
    if (parser_->failed()) return Result::failed;
    return parser_->done() ? Result::done : Result::more;
}

void HttpReply::reset() {
    parser_->reset();
}

int HttpReply::status() const {
    return parser_->response().status;
}

bool HttpReply::keep_alive() const {
    return parser_->keep_alive();
}

int HttpReply::error_code() const {
    return 1 + static_cast<int>(parser_->error());
}

std::string http_error_text(int code) {
    if (code <= 0) return "unexpected bytes";
    return std::string(iolab::http::to_string(static_cast<iolab::http::Error>(code - 1)));
}

}  // namespace loadgen
