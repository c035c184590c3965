// HTTP/1.1 responses, parsed incrementally (RFC 9112), for every client of the
// suite: http-get, fetcher, loadgen.
//
//     iolab::http::ResponseParser p;           // one per connection
//     p.set_head_request(false);               // true before a HEAD request
//     while (!p.done()) {
//         n = read(fd, buf, sizeof buf);
//         if (n == 0) { p.feed_eof(); break; } // the peer closed
//         std::size_t used = p.feed({buf, n}); // bytes past `used` belong to
//     }                                        // the next response
//     if (p.failed()) ... p.error_message();
//     p.response().status / .headers / .body
//     if (p.keep_alive()) p.reset();           // next response, same connection
//
// The parser never consumes a byte past the end of the message it is parsing:
// feed() returns how many bytes it took, and a keep-alive client keeps the rest
// for the next message. Bytes may arrive split anywhere, even one at a time.
//
// Framing (RFC 9112 section 6.3): a response to HEAD, a 1xx, 204 or 304 has no
// body; otherwise Transfer-Encoding whose last coding is chunked means chunked
// (chunk extensions ignored, trailers kept), another Transfer-Encoding means the
// body runs to the connection's close, Content-Length gives its length, and
// without either the body runs to the close. Both Transfer-Encoding and
// Content-Length, or Content-Length values that differ, are errors (response
// splitting). Interim 1xx responses (not 101) are skipped by default: the
// parser then goes on with the final response on the same bytes.
//
// Hard limits (Limits) bound every buffer: a line (status, header, chunk size,
// trailer) of 8 KiB, 100 header fields, chunk sizes, and the body when it is
// accumulated. Passing one gives an error naming the limit. Obsolete line
// folding (a header line starting with SP or HTAB) is rejected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iolab::http {

// ---- header fields ----------------------------------------------------------

// ASCII case-insensitive comparison, as header names and schemes need.
bool iequals(std::string_view a, std::string_view b) noexcept;

// Header fields in the order received, names as sent; lookups ignore case.
class Headers {
  public:
    struct Field {
        std::string name;
        std::string value;  // leading and trailing whitespace removed
    };

    void add(std::string name, std::string value);
    // The first value of `name`, if present.
    [[nodiscard]] std::optional<std::string_view> get(std::string_view name) const;
    // Every value of `name`, in order.
    [[nodiscard]] std::vector<std::string_view> get_all(std::string_view name) const;
    [[nodiscard]] bool has(std::string_view name) const { return get(name).has_value(); }
    // True when a comma-separated list header (Connection, Transfer-Encoding)
    // contains `token`, case-insensitively, in any of its fields.
    [[nodiscard]] bool has_token(std::string_view name, std::string_view token) const;

    [[nodiscard]] const std::vector<Field>& fields() const noexcept { return fields_; }
    [[nodiscard]] std::size_t size() const noexcept { return fields_.size(); }
    [[nodiscard]] bool empty() const noexcept { return fields_.empty(); }
    void clear() noexcept { fields_.clear(); }

  private:
    std::vector<Field> fields_;
};

// ---- the response ---------------------------------------------------------

struct Response {
    int version_major = 1;
    int version_minor = 1;
    int status = 0;      // 100..999
    std::string reason;  // may be empty
    Headers headers;
    Headers trailers;            // chunked trailer fields, if any
    std::string body;            // unless a body sink was set
    std::size_t head_bytes = 0;  // size of the status line and header section as received
    std::string raw_head;        // those bytes, when ResponseParser::set_keep_raw_head(true)
};

// How the body of the current message is delimited.
enum class Framing {
    unknown,         // headers not complete yet
    none,            // HEAD, 1xx, 204, 304
    content_length,  // exactly Content-Length bytes
    chunked,         // Transfer-Encoding: ..., chunked
    until_close,     // no length: the body ends when the server closes
};
std::string_view to_string(Framing f) noexcept;

enum class Error {
    none,
    bad_status_line,        // not "HTTP/x.y NNN reason"
    bad_version,            // not HTTP/1.x
    bad_header,             // malformed field line (no colon, bad name, control bytes)
    folded_header,          // obsolete line folding
    line_too_long,          // a line over Limits::max_line
    too_many_headers,       // over Limits::max_headers fields (or trailer fields)
    bad_content_length,     // not a decimal number, or differing values
    bad_transfer_encoding,  // chunked twice, or with Content-Length
    bad_chunk,              // malformed chunk-size line or missing CRLF after data
    chunk_too_large,        // a chunk over Limits::max_chunk
    body_too_large,         // body over Limits::max_body
    truncated,              // the connection closed before the message ended
    empty_response,         // the connection closed before any byte
    protocol_switch,        // 101 Switching Protocols: not HTTP/1.1 any more
};
std::string_view to_string(Error e) noexcept;

struct Limits {
    std::size_t max_line = 8 * 1024;         // status, header, chunk-size and trailer lines
    std::size_t max_headers = 100;           // header fields (and, separately, trailer fields)
    uint64_t max_chunk = uint64_t{1} << 30;  // one chunk's size
    uint64_t max_body = uint64_t{1} << 30;   // the whole body (with or without a sink)
};

// How a response's body is delimited (RFC 9112 section 6.3), decided from its
// status, its header fields and whether the request was HEAD; see the framing
// paragraph at the top. `error` is Error::none unless the fields are
// ambiguous or invalid; `length` is set for Framing::content_length.
struct FramingDecision {
    Framing framing = Framing::unknown;
    std::optional<uint64_t> length;
    Error error = Error::none;
    std::string message;  // why, when error is set
};
FramingDecision response_framing(const Headers& headers, int status, bool head_request,
                                 uint64_t max_body);

class ResponseParser {
  public:
    // Called once the status line and headers are parsed (before any body byte).
    using HeadHandler = std::function<void(const Response&)>;
    // Called with each piece of body (chunked: the decoded data). When set, the
    // body is not accumulated in response().body.
    using BodyHandler = std::function<void(std::string_view)>;

    explicit ResponseParser(Limits limits = {});

    void on_head(HeadHandler h) { on_head_ = std::move(h); }
    void on_body(BodyHandler h) { on_body_ = std::move(h); }
    // The request was HEAD: the response has no body whatever its headers say.
    // Stays set across reset() until changed.
    void set_head_request(bool head) noexcept { head_request_ = head; }
    // Deliver 1xx interim responses as messages of their own instead of
    // skipping them (default: skipped).
    void set_skip_interim(bool skip) noexcept { skip_interim_ = skip; }
    // Keep the status line and header section as received in response().raw_head
    // (for printing them verbatim, as curl -i does). Off by default.
    void set_keep_raw_head(bool keep) noexcept { keep_raw_head_ = keep; }

    // Parses as much of `data` as belongs to the current message; returns the
    // number of bytes used. Less than data.size() only when the message ended
    // (done()) or an error occurred (failed()). Feeding a finished or failed
    // parser uses nothing.
    std::size_t feed(std::string_view data);
    // The connection was closed by the peer: ends a body that runs to the close,
    // otherwise an unfinished message becomes an error (truncated / empty).
    void feed_eof();

    [[nodiscard]] bool done() const noexcept { return state_ == State::done; }
    [[nodiscard]] bool failed() const noexcept { return state_ == State::error; }
    [[nodiscard]] bool head_complete() const noexcept { return head_done_; }
    // True once any byte of this message arrived.
    [[nodiscard]] bool started() const noexcept { return started_; }
    [[nodiscard]] Error error() const noexcept { return error_; }
    // A sentence naming the problem: "header line longer than 8192 bytes".
    [[nodiscard]] const std::string& error_message() const noexcept { return message_; }

    [[nodiscard]] const Response& response() const noexcept { return resp_; }
    [[nodiscard]] Response& response() noexcept { return resp_; }
    [[nodiscard]] Framing framing() const noexcept { return framing_; }
    // Body bytes delivered so far (decoded, for chunked).
    [[nodiscard]] uint64_t body_bytes() const noexcept { return body_bytes_; }
    // Content-Length when the framing is content_length.
    [[nodiscard]] std::optional<uint64_t> content_length() const noexcept {
        return content_length_;
    }
    // Interim (1xx) responses skipped before this one.
    [[nodiscard]] std::size_t interim_skipped() const noexcept { return interim_; }
    // After done(): may the connection carry another request? False for
    // HTTP/1.0 without keep-alive, "Connection: close", and close-framed bodies.
    [[nodiscard]] bool keep_alive() const noexcept;

    // Forgets the message, ready for the next one on the same connection.
    // Keeps the limits, the handlers and the HEAD setting.
    void reset();

  private:
    enum class State {
        status_line,
        header_line,
        body_length,
        body_close,
        chunk_size,
        chunk_data,
        chunk_data_end,
        trailer_line,
        done,
        error,
    };

    // Appends bytes up to and including LF to line_; returns the bytes used and
    // sets `complete` when a whole line (terminator stripped) is in line_.
    std::size_t take_line(std::string_view data, bool& complete);
    void fail(Error e, std::string message);
    void parse_status_line(std::string_view line);
    void parse_field_line(std::string_view line, Headers& into, bool trailer);
    void end_of_head();
    void parse_chunk_size(std::string_view line);
    void deliver(std::string_view piece);
    void finish();

    Limits limits_;
    HeadHandler on_head_;
    BodyHandler on_body_;
    bool head_request_ = false;
    bool skip_interim_ = true;
    bool keep_raw_head_ = false;

    State state_ = State::status_line;
    Error error_ = Error::none;
    std::string message_;
    std::string line_;  // the unfinished line, at most max_line + 1 bytes
    Response resp_;
    Framing framing_ = Framing::unknown;
    std::optional<uint64_t> content_length_;
    uint64_t remaining_ = 0;  // of the Content-Length body or of the current chunk
    uint64_t body_bytes_ = 0;
    std::size_t interim_ = 0;
    bool head_done_ = false;
    bool started_ = false;
};

// ---- URLs -------------------------------------------------------------------

class UrlError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

// An absolute http:// (or https://) URL: scheme://host[:port][/path][?query].
// The fragment is dropped; user info is refused.
struct Url {
    std::string scheme;  // "http" or "https", lower case
    std::string host;    // lower case; an IPv6 literal without its brackets
    uint16_t port = 80;  // the default port of the scheme when none was given
    bool explicit_port = false;
    std::string target;  // path and query as sent in the request line, at least "/"

    [[nodiscard]] bool ipv6_literal() const noexcept { return host.find(':') != std::string::npos; }
    // host[:port] as the Host header wants it: brackets around IPv6, the port
    // only when it is not the scheme's default.
    [[nodiscard]] std::string authority() const;
    [[nodiscard]] std::string to_string() const;  // scheme://authority/target
    // The path part of the target, without the query.
    [[nodiscard]] std::string_view path() const;
};

// Parses an absolute URL; throws UrlError naming the problem. Schemes other
// than http and https are refused here (https is refused by the callers: TLS
// is outside this lab).
Url parse_url(std::string_view text);

// Resolves `ref` (a Location value, an href) against `base` (RFC 3986 section
// 5.2): absolute URLs, "//host/x", "/abs", "rel", "?q", "../up". Throws
// UrlError when the result is not a valid http(s) URL.
Url resolve_url(const Url& base, std::string_view ref);

// The default port of a scheme: 80 for http, 443 for https.
uint16_t default_port(std::string_view scheme) noexcept;

// The request http-get and fetcher send: "GET TARGET HTTP/1.1" (or HEAD) with
// Host, User-Agent, Accept: */* and, unless keep_alive, Connection: close.
std::string build_request(std::string_view method, const Url& url, std::string_view user_agent,
                          bool keep_alive = false);

}  // namespace iolab::http
