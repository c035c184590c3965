#include "common/http.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <string>

namespace iolab::http {

namespace {

constexpr char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}
constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
constexpr bool is_ws(char c) noexcept {
    return c == ' ' || c == '\t';
}

// tchar (RFC 9110 section 5.6.2): the characters of a token, such as a field name.
constexpr bool is_tchar(char c) noexcept {
    if (is_alpha(c) || is_digit(c)) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

// Control characters other than HTAB (NUL, CR, LF, DEL, ...) never belong in a
// field value, a reason phrase or a chunk extension.
constexpr bool is_bad_ctl(char c) noexcept {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_ws(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ws(s.back()))
        s.remove_suffix(1);
    return s;
}

// Calls fn(element) for each element of a comma-separated list, trimmed, empty
// elements skipped (RFC 9110 section 5.6.1).
template <typename Fn>
void for_each_list_element(std::string_view value, Fn&& fn) {
    while (true) {
        std::size_t comma = value.find(',');
        std::string_view el = trim(value.substr(0, comma));
        if (!el.empty()) fn(el);
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
}

// A transfer coding's name without its parameters ("chunked", "gzip;q=1" -> "gzip").
std::string_view coding_name(std::string_view el) noexcept {
    return trim(el.substr(0, el.find(';')));
}

// Strict decimal: digits only, no sign, no overflow.
std::optional<uint64_t> parse_decimal(std::string_view s) noexcept {
    if (s.empty() || s.size() > 19) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        if (!is_digit(c)) return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// ---- Headers ----------------------------------------------------------------

void Headers::add(std::string name, std::string value) {
    fields_.push_back({std::move(name), std::move(value)});
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
    for (const auto& f : fields_) {
        if (iequals(f.name, name)) return std::string_view(f.value);
    }
    return std::nullopt;
}

std::vector<std::string_view> Headers::get_all(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const auto& f : fields_) {
        if (iequals(f.name, name)) out.emplace_back(f.value);
    }
    return out;
}

bool Headers::has_token(std::string_view name, std::string_view token) const {
    bool found = false;
    for (std::string_view v : get_all(name)) {
        for_each_list_element(v, [&](std::string_view el) {
            if (iequals(coding_name(el), token)) found = true;
        });
    }
    return found;
}

// ---- names ------------------------------------------------------------------

std::string_view to_string(Framing f) noexcept {
    switch (f) {
        case Framing::unknown:
            return "unknown";
        case Framing::none:
            return "none";
        case Framing::content_length:
            return "content-length";
        case Framing::chunked:
            return "chunked";
        case Framing::until_close:
            return "until-close";
    }
    return "?";
}

std::string_view to_string(Error e) noexcept {
    switch (e) {
        case Error::none:
            return "none";
        case Error::bad_status_line:
            return "bad status line";
        case Error::bad_version:
            return "unsupported HTTP version";
        case Error::bad_header:
            return "malformed header field";
        case Error::folded_header:
            return "folded header field";
        case Error::line_too_long:
            return "line too long";
        case Error::too_many_headers:
            return "too many header fields";
        case Error::bad_content_length:
            return "invalid Content-Length";
        case Error::bad_transfer_encoding:
            return "invalid Transfer-Encoding";
        case Error::bad_chunk:
            return "malformed chunk";
        case Error::chunk_too_large:
            return "chunk too large";
        case Error::body_too_large:
            return "body too large";
        case Error::truncated:
            return "truncated response";
        case Error::empty_response:
            return "empty response";
        case Error::protocol_switch:
            return "unexpected protocol switch";
    }
    return "?";
}

// ---- ResponseParser -------------------------------------------------------------

ResponseParser::ResponseParser(Limits limits) : limits_(limits) {}

void ResponseParser::reset() {
    state_ = State::status_line;
    error_ = Error::none;
    message_.clear();
    line_.clear();
    resp_ = Response{};
    framing_ = Framing::unknown;
    content_length_.reset();
    remaining_ = 0;
    body_bytes_ = 0;
    interim_ = 0;
    head_done_ = false;
    started_ = false;
}

void ResponseParser::fail(Error e, std::string message) {
    state_ = State::error;
    error_ = e;
    message_ = std::move(message);
    line_.clear();
}

bool ResponseParser::keep_alive() const noexcept {
    if (state_ != State::done || framing_ == Framing::until_close) return false;
    if (resp_.headers.has_token("Connection", "close")) return false;
    if (resp_.version_minor == 0) return resp_.headers.has_token("Connection", "keep-alive");
    return true;
}

std::size_t ResponseParser::take_line(std::string_view data, bool& complete) {
    complete = false;
    std::size_t lf = data.find('\n');
    std::size_t take = lf == std::string_view::npos ? data.size() : lf;
    // The line may hold max_line bytes plus the CR of its terminator.
    if (line_.size() + take > limits_.max_line + 1) {
        std::string_view what = state_ == State::status_line    ? "status line"
                                : state_ == State::chunk_size   ? "chunk-size line"
                                : state_ == State::trailer_line ? "trailer line"
                                                                : "header line";
        fail(Error::line_too_long,
             std::string(what) + " longer than " + std::to_string(limits_.max_line) + " bytes");
        return take;
    }
    line_.append(data.substr(0, take));
    if (lf == std::string_view::npos) return take;
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.size() > limits_.max_line) {
        fail(Error::line_too_long,
             "line longer than " + std::to_string(limits_.max_line) + " bytes");
        return take + 1;
    }
    complete = true;
    return take + 1;
}

// One switch over the parser's states, each case a few lines: kept whole (86
// lines) so that the state machine reads in one place.
std::size_t ResponseParser::feed(std::string_view data) {
    std::size_t used = 0;
    if (!data.empty() && state_ == State::status_line) started_ = true;
    while (used < data.size() && state_ != State::done && state_ != State::error) {
        std::string_view rest = data.substr(used);
        switch (state_) {
            case State::status_line:
            case State::header_line:
            case State::chunk_size:
            case State::trailer_line: {
                bool complete = false;
                std::size_t n = take_line(rest, complete);
                used += n;
                if (state_ == State::status_line || state_ == State::header_line) {
                    resp_.head_bytes += n;
                    if (keep_raw_head_) resp_.raw_head.append(rest.substr(0, n));
                }
                if (state_ == State::status_line && !complete) {
                    // Garbage is refused at once instead of after 8 KiB.
                    constexpr std::string_view prefix = "HTTP/";
                    std::size_t k = std::min(line_.size(), prefix.size());
                    if (line_.compare(0, k, prefix.substr(0, k)) != 0) {
                        fail(Error::bad_status_line, "response does not start with \"HTTP/\"");
                    }
                }
                if (!complete) break;
                std::string line = std::move(line_);
                line_.clear();
                if (state_ == State::status_line) {
                    parse_status_line(line);
                } else if (state_ == State::header_line) {
                    if (line.empty()) {
                        end_of_head();
                    } else {
                        parse_field_line(line, resp_.headers, false);
                    }
                } else if (state_ == State::chunk_size) {
                    parse_chunk_size(line);
                } else if (line.empty()) {
                    finish();
                } else {
                    parse_field_line(line, resp_.trailers, true);
                }
                break;
            }
            case State::body_length:
            case State::chunk_data: {
                auto n = static_cast<std::size_t>(std::min<uint64_t>(remaining_, rest.size()));
                deliver(rest.substr(0, n));
                used += n;
                remaining_ -= n;
                if (state_ == State::error) break;
                if (remaining_ == 0) {
                    if (state_ == State::body_length) {
                        finish();
                    } else {
                        state_ = State::chunk_data_end;
                    }
                }
                break;
            }
            case State::chunk_data_end: {
                // Exactly CRLF (or a bare LF) after the chunk's data.
                char c = rest[0];
                if (c == '\r' && line_.empty()) {
                    line_.push_back('\r');
                    used += 1;
                } else if (c == '\n') {
                    line_.clear();
                    used += 1;
                    state_ = State::chunk_size;
                } else {
                    fail(Error::bad_chunk, "chunk data not followed by CRLF");
                }
                break;
            }
            case State::body_close:
                deliver(rest);
                used = data.size();
                break;
            case State::done:
            case State::error:
                break;
        }
    }
    return used;
}

void ResponseParser::feed_eof() {
    switch (state_) {
        case State::done:
        case State::error:
            return;
        case State::body_close:
            finish();
            return;
        case State::status_line:
            if (!started_) {
                fail(Error::empty_response, "connection closed before any response byte");
            } else {
                fail(Error::truncated, "connection closed inside the status line");
            }
            return;
        case State::header_line:
            fail(Error::truncated, "connection closed inside the header section");
            return;
        case State::body_length:
            fail(Error::truncated, "connection closed after " + std::to_string(body_bytes_) +
                                       " of " + std::to_string(*content_length_) + " body bytes");
            return;
        case State::chunk_size:
        case State::chunk_data:
        case State::chunk_data_end:
        case State::trailer_line:
            fail(Error::truncated, "connection closed inside the chunked body after " +
                                       std::to_string(body_bytes_) + " bytes");
            return;
    }
}

void ResponseParser::parse_status_line(std::string_view line) {
    // HTTP-version SP status-code [SP reason-phrase]
    auto bad = [&](std::string why) {
        std::string shown(line.substr(0, 80));
        for (char& c : shown) {
            if (is_bad_ctl(c)) c = '?';
        }
        fail(Error::bad_status_line, why + ": \"" + shown + "\"");
    };
    if (!line.starts_with("HTTP/")) return bad("response does not start with \"HTTP/\"");
    if (line.size() < 12 || !is_digit(line[5]) || line[6] != '.' || !is_digit(line[7]) ||
        line[8] != ' ') {
        return bad("malformed status line");
    }
    if (line[5] != '1') {
        return fail(Error::bad_version,
                    "unsupported HTTP version " + std::string(line.substr(0, 8)));
    }
    if (!is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11]) || line[9] == '0') {
        return bad("malformed status code");
    }
    if (line.size() > 12 && line[12] != ' ') return bad("malformed status code");
    std::string_view reason = line.size() > 13 ? line.substr(13) : std::string_view{};
    if (std::any_of(reason.begin(), reason.end(), is_bad_ctl)) {
        return bad("control character in the reason phrase");
    }
    resp_.version_major = line[5] - '0';
    resp_.version_minor = line[7] - '0';
    resp_.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    resp_.reason = std::string(reason);
    state_ = State::header_line;
}

void ResponseParser::parse_field_line(std::string_view line, Headers& into, bool trailer) {
    std::string_view kind = trailer ? "trailer" : "header";
    if (is_ws(line.front())) {
        return fail(Error::folded_header, std::string(kind) +
                                              " line starts with whitespace (obsolete line folding "
                                              "is not accepted)");
    }
    if (into.size() >= limits_.max_headers) {
        return fail(Error::too_many_headers, "more than " + std::to_string(limits_.max_headers) +
                                                 " " + std::string(kind) + " fields");
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
        return fail(Error::bad_header, std::string(kind) + " line without a colon");
    }
    std::string_view name = line.substr(0, colon);
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar)) {
        return fail(Error::bad_header, std::string(kind) +
                                           " field name is not a token (whitespace before the "
                                           "colon, or a forbidden character)");
    }
    std::string_view value = trim(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), is_bad_ctl)) {
        return fail(Error::bad_header, "control character in the value of " + std::string(kind) +
                                           " " + std::string(name));
    }
    into.add(std::string(name), std::string(value));
}

namespace {

FramingDecision framing_error(Error e, std::string message) {
    FramingDecision d;
    d.error = e;
    d.message = std::move(message);
    return d;
}

// Transfer-Encoding present (and no Content-Length): chunked when chunked is
// the last coding, to the close for other codings, an error otherwise.
FramingDecision transfer_coding_framing(const std::vector<std::string_view>& te) {
    std::vector<std::string_view> codings;
    for (std::string_view v : te) {
        for_each_list_element(v, [&](std::string_view el) { codings.push_back(coding_name(el)); });
    }
    if (codings.empty())
        return framing_error(Error::bad_transfer_encoding, "empty Transfer-Encoding");
    auto chunked = std::count_if(codings.begin(), codings.end(),
                                 [](std::string_view c) { return iequals(c, "chunked"); });
    if (chunked > 1) {
        return framing_error(Error::bad_transfer_encoding, "chunked applied more than once");
    }
    FramingDecision d;
    if (iequals(codings.back(), "chunked")) {
        d.framing = Framing::chunked;
    } else if (chunked == 1) {
        return framing_error(Error::bad_transfer_encoding,
                             "chunked is not the last transfer coding");
    } else {
        d.framing = Framing::until_close;  // RFC 9112 6.3 rule 4, for a response
    }
    return d;
}

// Content-Length fields: one decimal value ("42, 42" and repeated equal
// fields are tolerated; differing values are not), within max_body.
FramingDecision length_framing(const std::vector<std::string_view>& cl, uint64_t max_body) {
    std::optional<uint64_t> length;
    bool ok = true;
    for (std::string_view v : cl) {
        bool any = false;
        for_each_list_element(v, [&](std::string_view el) {
            any = true;
            auto n = parse_decimal(el);
            if (!n || (length && *length != *n)) ok = false;
            if (n) length = n;
        });
        if (!any) ok = false;
    }
    if (!ok || !length) {
        std::string shown(cl.front().substr(0, 40));
        for (char& c : shown) {
            if (is_bad_ctl(c)) c = '?';
        }
        return framing_error(Error::bad_content_length,
                             "invalid Content-Length \"" + shown + "\"" +
                                 (cl.size() > 1 ? " (or differing values)" : ""));
    }
    if (*length > max_body) {
        return framing_error(Error::body_too_large, "Content-Length " + std::to_string(*length) +
                                                        " exceeds the body limit of " +
                                                        std::to_string(max_body) + " bytes");
    }
    FramingDecision d;
    d.framing = Framing::content_length;
    d.length = length;
    return d;
}

}  // namespace

FramingDecision response_framing(const Headers& headers, int status, bool head_request,
                                 uint64_t max_body) {
    if (head_request || (status >= 100 && status < 200) || status == 204 || status == 304) {
        FramingDecision d;
        d.framing = Framing::none;
        return d;
    }
    const auto te = headers.get_all("Transfer-Encoding");
    const auto cl = headers.get_all("Content-Length");
    if (!te.empty() && !cl.empty()) {
        return framing_error(Error::bad_transfer_encoding,
                             "both Transfer-Encoding and Content-Length (possible response "
                             "splitting)");
    }
    if (!te.empty()) return transfer_coding_framing(te);
    if (!cl.empty()) return length_framing(cl, max_body);
    FramingDecision d;
    d.framing = Framing::until_close;
    return d;
}

void ResponseParser::end_of_head() {
    const int status = resp_.status;
    if (status >= 100 && status < 200) {
        if (status == 101) {
            return fail(Error::protocol_switch,
                        "101 Switching Protocols without an upgrade "
                        "request");
        }
        if (skip_interim_) {
            if (interim_ >= 16) {
                return fail(Error::bad_status_line, "more than 16 interim 1xx responses");
            }
            std::size_t kept = interim_ + 1;
            resp_ = Response{};
            interim_ = kept;
            state_ = State::status_line;
            return;
        }
    }
    FramingDecision d = response_framing(resp_.headers, status, head_request_, limits_.max_body);
    if (d.error != Error::none) return fail(d.error, std::move(d.message));
    framing_ = d.framing;
    if (framing_ == Framing::content_length) {
        content_length_ = d.length;
        remaining_ = *d.length;
    }

    head_done_ = true;
    if (on_head_) on_head_(resp_);
    switch (framing_) {
        case Framing::none:
            finish();
            break;
        case Framing::content_length:
            if (remaining_ == 0) {
                finish();
            } else {
                state_ = State::body_length;
            }
            break;
        case Framing::chunked:
            state_ = State::chunk_size;
            break;
        case Framing::until_close:
            state_ = State::body_close;
            break;
        case Framing::unknown:
            break;
    }
}

void ResponseParser::parse_chunk_size(std::string_view line) {
    // chunk-size [ BWS ";" chunk-ext ] : hex digits, then extensions we ignore.
    std::size_t i = 0;
    uint64_t size = 0;
    while (i < line.size() && hex_value(line[i]) >= 0) {
        if (i >= 16) return fail(Error::chunk_too_large, "chunk size has more than 16 hex digits");
        size = size * 16 + static_cast<uint64_t>(hex_value(line[i]));
        ++i;
    }
    if (i == 0) return fail(Error::bad_chunk, "chunk-size line does not start with a hex number");
    std::string_view rest = line.substr(i);
    std::string_view after = trim(rest);
    if (!after.empty() && after.front() != ';') {
        return fail(Error::bad_chunk, "unexpected character after the chunk size");
    }
    if (std::any_of(rest.begin(), rest.end(), is_bad_ctl)) {
        return fail(Error::bad_chunk, "control character in a chunk extension");
    }
    if (size > limits_.max_chunk) {
        return fail(Error::chunk_too_large, "chunk of " + std::to_string(size) +
                                                " bytes exceeds the limit of " +
                                                std::to_string(limits_.max_chunk));
    }
    if (size == 0) {
        state_ = State::trailer_line;
        return;
    }
    remaining_ = size;
    state_ = State::chunk_data;
}

void ResponseParser::deliver(std::string_view piece) {
    if (piece.empty()) return;
    if (body_bytes_ + piece.size() > limits_.max_body) {
        return fail(Error::body_too_large,
                    "body exceeds the limit of " + std::to_string(limits_.max_body) + " bytes");
    }
    body_bytes_ += piece.size();
    if (on_body_) {
        on_body_(piece);
    } else {
        resp_.body.append(piece);
    }
}

void ResponseParser::finish() {
    state_ = State::done;
    line_.clear();
}

// ---- URLs -------------------------------------------------------------------

namespace {

// Percent-encodes the bytes a request target cannot carry raw (space, non-ASCII,
// quotes and the like); refuses control characters.
std::string encode_target(std::string_view s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) throw UrlError("URL contains a control character");
        if (u >= 0x80 || c == ' ' || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' ||
            c == '`' || c == '{' || c == '|' || c == '}') {
            out.push_back('%');
            out.push_back(hex[u >> 4]);
            out.push_back(hex[u & 15]);
        } else {
            out.push_back(c);
        }
    }
    return out;
}

// RFC 3986 section 5.2.4.
std::string remove_dot_segments(std::string_view in) {
    std::string out;
    while (!in.empty()) {
        if (in.starts_with("../")) {
            in.remove_prefix(3);
        } else if (in.starts_with("./")) {
            in.remove_prefix(2);
        } else if (in.starts_with("/./")) {
            in.remove_prefix(2);
        } else if (in == "/.") {
            in = "/";
        } else if (in.starts_with("/../") || in == "/..") {
            in = in.size() == 3 ? std::string_view("/") : in.substr(3);
            std::size_t slash = out.rfind('/');
            out.erase(slash == std::string::npos ? 0 : slash);
        } else if (in == "." || in == "..") {
            in = {};
        } else {
            std::size_t next = in.find('/', 1);
            if (next == std::string_view::npos) next = in.size();
            out.append(in.substr(0, next));
            in.remove_prefix(next);
        }
    }
    return out;
}

// Splits "path?query#fragment" into path and "?query" (fragment dropped).
std::pair<std::string_view, std::string_view> split_target(std::string_view s) {
    s = s.substr(0, s.find('#'));
    std::size_t q = s.find('?');
    if (q == std::string_view::npos) return {s, {}};
    return {s.substr(0, q), s.substr(q)};
}

bool looks_like_scheme(std::string_view ref) {
    std::size_t colon = ref.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    if (!is_alpha(ref[0])) return false;
    for (std::size_t i = 1; i < colon; ++i) {
        char c = ref[i];
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return false;
    }
    return true;
}

}  // namespace

std::string build_request(std::string_view method, const Url& url, std::string_view user_agent,
                          bool keep_alive) {
    // [lab:request]
    std::string r;
    r.reserve(128 + url.target.size());
    r.append(method).append(" ").append(url.target).append(" HTTP/1.1\r\n");
    r.append("Host: ").append(url.authority()).append("\r\n");
    r.append("User-Agent: ").append(user_agent).append("\r\n");
    r.append("Accept: */*\r\n");
    if (!keep_alive) r.append("Connection: close\r\n");
    r.append("\r\n");
    return r;
    // [/lab:request]
}

uint16_t default_port(std::string_view scheme) noexcept {
    return iequals(scheme, "https") ? 443 : 80;
}

std::string Url::authority() const {
    std::string a = ipv6_literal() ? "[" + host + "]" : host;
    if (port != default_port(scheme)) a += ":" + std::to_string(port);
    return a;
}

std::string Url::to_string() const {
    return scheme + "://" + authority() + target;
}

std::string_view Url::path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

Url parse_url(std::string_view text) {
    Url u;
    std::size_t sep = text.find("://");
    if (sep == std::string_view::npos || !looks_like_scheme(text.substr(0, sep + 1))) {
        throw UrlError("URL has no scheme: expected http://HOST[:PORT]/PATH");
    }
    for (char c : text.substr(0, sep))
        u.scheme.push_back(lower(c));
    if (u.scheme != "http" && u.scheme != "https") {
        throw UrlError("unsupported scheme \"" + u.scheme + "\": only http:// URLs");
    }
    u.port = default_port(u.scheme);
    std::string_view rest = text.substr(sep + 3);
    std::size_t end = rest.find_first_of("/?#");
    std::string_view auth = rest.substr(0, end);
    std::string_view tail = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    if (auth.find('@') != std::string_view::npos) {
        throw UrlError("user info (user@host) in URLs is not supported");
    }
    std::string_view port_text;
    bool has_port = false;
    if (auth.starts_with("[")) {
        std::size_t close = auth.find(']');
        if (close == std::string_view::npos) throw UrlError("unterminated IPv6 literal");
        std::string lit(auth.substr(1, close - 1));
        in6_addr a6{};
        // inet_pton reads a C string: a NUL inside the brackets would hide
        // what follows it (found by fuzz/url_fuzz.cpp), so check every byte.
        const bool plain = std::all_of(lit.begin(), lit.end(), [](char c) {
            return hex_value(c) >= 0 || c == ':' || c == '.';
        });
        if (lit.empty() || !plain || ::inet_pton(AF_INET6, lit.c_str(), &a6) != 1) {
            throw UrlError("invalid IPv6 literal [" + lit + "]");
        }
        for (char c : lit)
            u.host.push_back(lower(c));
        std::string_view after = auth.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') throw UrlError("unexpected text after the IPv6 literal");
            has_port = true;
            port_text = after.substr(1);
        }
    } else {
        std::size_t colon = auth.find(':');
        std::string_view h = auth.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port_text = auth.substr(colon + 1);
        }
        for (char c : h) {
            if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.' && c != '_') {
                throw UrlError("invalid character in host name \"" + std::string(h) + "\"");
            }
            u.host.push_back(lower(c));
        }
    }
    if (u.host.empty()) throw UrlError("URL has no host");
    if (has_port && !port_text.empty()) {
        auto p = parse_decimal(port_text);
        if (!p || *p == 0 || *p > 65535) {
            throw UrlError("invalid port \"" + std::string(port_text) + "\"");
        }
        u.port = static_cast<uint16_t>(*p);
        u.explicit_port = true;
    }
    auto [path, query] = split_target(tail);
    std::string target = path.empty() ? "/" : std::string(path);
    target += query;
    u.target = encode_target(target);
    return u;
}

Url resolve_url(const Url& base, std::string_view ref) {
    ref = trim(ref);
    if (looks_like_scheme(ref)) return parse_url(ref);
    if (ref.starts_with("//")) return parse_url(base.scheme + ":" + std::string(ref));
    Url u = base;
    auto [path, query] = split_target(ref);
    std::string target;
    if (path.empty()) {
        target = std::string(base.path());
        if (!query.empty()) {
            target += query;
        } else {
            std::string_view bt = base.target;
            std::size_t q = bt.find('?');
            if (q != std::string_view::npos) target += bt.substr(q);
        }
    } else {
        std::string merged;
        if (path.front() == '/') {
            merged = std::string(path);
        } else {
            std::string_view bp = base.path();
            std::size_t slash = bp.rfind('/');
            merged = std::string(slash == std::string_view::npos ? "/" : bp.substr(0, slash + 1));
            merged += path;
        }
        target = remove_dot_segments(merged);
        if (target.empty() || target.front() != '/') target.insert(0, "/");
        target += query;
    }
    u.target = encode_target(target);
    return u;
}

}  // namespace iolab::http
