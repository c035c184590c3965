// HttpReply: one connection's view of the responses it reads, on top of the
// incremental parser in common/http.hpp. The body is counted, never stored.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace iolab::http {
class ResponseParser;
}

namespace loadgen {

class HttpReply {
  public:
    HttpReply();
    ~HttpReply();
    HttpReply(const HttpReply&) = delete;
    HttpReply& operator=(const HttpReply&) = delete;

    enum class Result { more, done, failed };
    // Feeds the next bytes; `used` says how many belonged to this response.
    Result feed(std::string_view data, std::size_t& used);
    // The server closed the connection.
    Result eof();
    void reset();

    [[nodiscard]] int status() const;
    [[nodiscard]] bool keep_alive() const;
    // 1 + iolab::http::Error after failed.
    [[nodiscard]] int error_code() const;

  private:
    std::unique_ptr<iolab::http::ResponseParser> parser_;
};

// The text for an error code from error_code().
std::string http_error_text(int code);

}  // namespace loadgen
