// HttpReply: loadgen's HTTP/1.1 response framer. It finds where each response
// ends on a keep-alive connection (RFC 9112 section 6.3) and keeps the status
// and whether the connection may carry the next request; the body is skipped,
// never stored.
//
// Built for the load generator's hot path, beside the full parser in
// common/http.hpp (which keeps headers, reason and body for the other
// clients): no allocation at all (its state is a few fixed fields, reset()
// forgets one response), and each byte is looked at once — the status line and
// header names byte by byte in one state machine, the values of headers that
// do not decide framing skipped with memchr, the body skipped by its length
// without a look. Only Content-Length, Transfer-Encoding and Connection are
// read. It reports the same errors as common/http (iolab::http::Error), with
// the same limits: an 8 KiB line, 100 fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loadgen {

class HttpReply {
  public:
    enum class Result { more, done, failed };
    // Feeds the next bytes; `used` says how many belonged to this response
    // (less than data.size() only when it is done or failed).
    Result feed(std::string_view data, std::size_t& used);
    // The server closed the connection: ends a body that runs to the close.
    Result eof();
    // Ready for the next response on the same connection.
    void reset();

    [[nodiscard]] int status() const { return status_; }
    // After done: may the connection carry another request?
    [[nodiscard]] bool keep_alive() const;
    // 1 + iolab::http::Error after failed.
    [[nodiscard]] int error_code() const { return error_; }

  private:
    enum class S : uint8_t {
        status,         // "HTTP/1.1 200", byte by byte
        reason,         // the rest of the status line
        line_start,     // first byte of a header line (or the empty line)
        name,           // header name up to ':'
        value_ows,      // whitespace before a value
        value,          // a value that decides framing
        skip_value,     // any other value: up to LF
        head_lf,        // CR of the empty line seen
        body_length,    // Content-Length bytes to skip
        body_close,     // everything up to the close
        chunk_size,     // hex digits
        chunk_ext,      // ";ext" up to LF
        chunk_data,     // bytes to skip
        chunk_cr,       // CR after the data
        chunk_lf,       // LF after the data
        trailer_start,  // first byte of a trailer line (or the empty line)
        trailer,        // a trailer line, up to LF
        trailer_lf,     // CR of the final empty line seen
        done,
        failed,
    };
    enum class Field : uint8_t { other, content_length, transfer_encoding, connection };

    Result fail(int error);
    Result end_of_head();
    void end_of_value();
    void end_of_token();
    bool line_byte();  // counts a byte of the current line; false past the limit

    S s_ = S::status;
    Field field_ = Field::other;
    bool any_ = false;  // a byte of this response arrived
    uint8_t minor_ = 1;
    int status_ = 0;
    int error_ = 0;
    uint16_t pos_ = 0;     // status: position in the line; name: its length
    uint16_t line_ = 0;    // bytes in the current line
    uint16_t fields_ = 0;  // header (then trailer) fields
    uint8_t interim_ = 0;  // 1xx responses skipped
    char name_[18] = {};   // lower-case name, when short enough to matter
    char token_[12] = {};  // lower-case list element (Connection, Transfer-Encoding)
    uint8_t token_len_ = 0;
    bool token_long_ = false;
    bool params_ = false;  // past a ';' in this element
    bool cr_ = false;      // a CR in a value: only LF may follow
    // what the head said
    bool has_length_ = false;
    bool bad_length_ = false;
    bool has_te_ = false;
    bool te_chunked_last_ = false;
    uint8_t te_chunked_ = 0;
    uint8_t te_codings_ = 0;
    bool conn_close_ = false;
    bool conn_keep_ = false;
    bool until_close_ = false;
    uint64_t length_ = 0;     // Content-Length
    uint64_t value_num_ = 0;  // digits of the Content-Length element being read
    bool value_digits_ = false;
    bool value_space_ = false;  // whitespace after digits
    uint64_t remaining_ = 0;    // body or chunk bytes still to skip
    uint8_t hex_ = 0;           // chunk-size digits
};

// The text for an error code from error_code().
std::string http_error_text(int code);

}  // namespace loadgen
