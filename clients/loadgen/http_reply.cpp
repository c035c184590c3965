#include "clients/loadgen/http_reply.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "common/http.hpp"

namespace loadgen {

namespace {

using iolab::http::Error;

constexpr int code(Error e) {
    return 1 + static_cast<int>(e);
}

constexpr std::size_t kMaxLine = 8 * 1024;
constexpr unsigned kMaxFields = 100;
constexpr uint64_t kMaxBody = uint64_t{1} << 30;  // a Content-Length or one chunk

// RFC 9110 tchar: the bytes a header name is made of.
constexpr std::array<bool, 256> kTchar = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c)
        t[static_cast<std::size_t>(c)] = t[static_cast<std::size_t>(c - 'a' + 'A')] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

constexpr char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr bool is_ctl(char c) {
    return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
}

}  // namespace

void HttpReply::reset() {
    *this = HttpReply{};  // a few plain fields: nothing to free, nothing to allocate
}

bool HttpReply::keep_alive() const {
    if (until_close_ || conn_close_) return false;
    return minor_ > 0 || conn_keep_;  // HTTP/1.0 keeps the connection only when asked
}

HttpReply::Result HttpReply::fail(int error) {
    s_ = S::failed;
    error_ = error;
    return Result::failed;
}

bool HttpReply::line_byte() {
    return ++line_ <= kMaxLine;
}

// A list element of Connection or Transfer-Encoding ends (at ',' or the end
// of the value).
void HttpReply::end_of_token() {
    if (token_len_ == 0 && !token_long_) return;  // empty elements are allowed
    const std::string_view t(token_, token_long_ ? 0 : token_len_);
    if (field_ == Field::transfer_encoding) {
        ++te_codings_;
        te_chunked_last_ = t == "chunked";
        if (te_chunked_last_ && te_chunked_ < 255) ++te_chunked_;
    } else if (field_ == Field::connection) {
        if (t == "close") conn_close_ = true;
        if (t == "keep-alive") conn_keep_ = true;
    }
    token_len_ = 0;
    token_long_ = false;
    params_ = false;
}

void HttpReply::end_of_value() {
    if (field_ == Field::content_length) {
        // "42" or the tolerated "42, 42"; an empty value or differing ones are bad.
        if (value_digits_) {
            if (has_length_ && length_ != value_num_) bad_length_ = true;
            length_ = value_num_;
            has_length_ = true;
        } else if (!has_length_) {
            bad_length_ = true;
        }
        value_num_ = 0;
        value_digits_ = value_space_ = false;
    } else {
        end_of_token();
        if (field_ == Field::transfer_encoding) has_te_ = true;
    }
}

// The empty line: how is the body framed? (RFC 9112 section 6.3)
HttpReply::Result HttpReply::end_of_head() {
    if (status_ >= 100 && status_ < 200) {
        if (status_ == 101) return fail(code(Error::protocol_switch));
        if (interim_ >= 16) return fail(code(Error::bad_status_line));
        const uint8_t skipped = static_cast<uint8_t>(interim_ + 1);
        reset();  // an interim response: the final one follows on the same bytes
        interim_ = skipped;
        any_ = true;
        return Result::more;
    }
    line_ = 0;
    if (status_ == 204 || status_ == 304) {
        s_ = S::done;
        return Result::done;
    }
    if (has_te_) {
        if (has_length_ || bad_length_) return fail(code(Error::bad_transfer_encoding));
        if (te_codings_ == 0 || te_chunked_ > 1) return fail(code(Error::bad_transfer_encoding));
        if (te_chunked_last_) {
            s_ = S::chunk_size;
            remaining_ = 0;
            hex_ = 0;
            return Result::more;
        }
        if (te_chunked_ == 1) return fail(code(Error::bad_transfer_encoding));
        until_close_ = true;
        s_ = S::body_close;
        return Result::more;
    }
    if (bad_length_) return fail(code(Error::bad_content_length));
    if (has_length_) {
        if (length_ > kMaxBody) return fail(code(Error::body_too_large));
        if (length_ == 0) {
            s_ = S::done;
            return Result::done;
        }
        remaining_ = length_;
        s_ = S::body_length;
        return Result::more;
    }
    until_close_ = true;
    s_ = S::body_close;
    return Result::more;
}

// One state machine over the bytes; each case consumes what it looked at.
// Long, as state machines are: one case per state reads better than a jump
// into helpers for every byte.
HttpReply::Result HttpReply::feed(std::string_view data, std::size_t& used) {
    const char* const begin = data.data();
    const char* p = begin;
    const char* const end = begin + data.size();
    const auto stop = [&](Result r) {
        used = static_cast<std::size_t>(p - begin);
        return r;
    };
    if (s_ == S::done || s_ == S::failed)
        return stop(s_ == S::done ? Result::done : Result::failed);
    if (p != end) any_ = true;
    while (p < end) {
        switch (s_) {
            case S::status: {
                // "HTTP/1.x NNN" then SP, CR or LF: checked position by position.
                const char c = *p++;
                static constexpr char kPrefix[] = "HTTP/1.";
                if (pos_ < 7) {
                    if (c != kPrefix[pos_])
                        return stop(
                            fail(code(pos_ == 5 && c >= '0' && c <= '9' ? Error::bad_version
                                                                        : Error::bad_status_line)));
                } else if (pos_ == 7) {
                    if (c < '0' || c > '9') return stop(fail(code(Error::bad_status_line)));
                    minor_ = static_cast<uint8_t>(c - '0');
                } else if (pos_ == 8) {
                    if (c != ' ') return stop(fail(code(Error::bad_status_line)));
                } else if (pos_ <= 11) {
                    if (c < '0' || c > '9') return stop(fail(code(Error::bad_status_line)));
                    status_ = status_ * 10 + (c - '0');
                } else if (status_ < 100) {
                    return stop(fail(code(Error::bad_status_line)));
                } else if (c == '\n') {
                    s_ = S::line_start;
                    line_ = 0;
                } else if (c == ' ' || c == '\r') {
                    s_ = S::reason;
                } else {
                    return stop(fail(code(Error::bad_status_line)));
                }
                ++pos_;
                ++line_;
                break;
            }
            case S::reason:
            case S::skip_value:
            case S::trailer: {
                // Nothing in these lines matters: find their end at once.
                const auto* nl = static_cast<const char*>(
                    std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
                const std::size_t n = static_cast<std::size_t>((nl ? nl + 1 : end) - p);
                if (line_ + n > kMaxLine + 1) return stop(fail(code(Error::line_too_long)));
                line_ = static_cast<uint16_t>(line_ + n);
                p += n;
                if (nl) {
                    line_ = 0;
                    s_ = s_ == S::trailer ? S::trailer_start : S::line_start;
                }
                break;
            }
            case S::line_start: {
                const char c = *p;
                if (c == '\r' || c == '\n') {
                    ++p;
                    if (c == '\r') {
                        s_ = S::head_lf;
                        break;
                    }
                    if (Result r = end_of_head(); r != Result::more) return stop(r);
                    break;
                }
                if (c == ' ' || c == '\t') return stop(fail(code(Error::folded_header)));
                if (++fields_ > kMaxFields) return stop(fail(code(Error::too_many_headers)));
                s_ = S::name;
                pos_ = 0;
                line_ = 0;
                break;
            }
            case S::head_lf:
                if (*p++ != '\n') return stop(fail(code(Error::bad_header)));
                if (Result r = end_of_head(); r != Result::more) return stop(r);
                break;
            case S::name: {
                const char c = *p++;
                if (!line_byte()) return stop(fail(code(Error::line_too_long)));
                if (c == ':') {
                    const std::string_view n(name_, std::min<std::size_t>(pos_, sizeof name_));
                    field_ = pos_ == 0                                ? Field::other
                             : n == "content-length" && pos_ == 14    ? Field::content_length
                             : n == "transfer-encoding" && pos_ == 17 ? Field::transfer_encoding
                             : n == "connection" && pos_ == 10        ? Field::connection
                                                                      : Field::other;
                    if (pos_ == 0) return stop(fail(code(Error::bad_header)));
                    s_ = S::value_ows;
                    break;
                }
                if (!kTchar[static_cast<unsigned char>(c)])
                    return stop(fail(code(Error::bad_header)));
                if (pos_ < sizeof name_) name_[pos_] = lower(c);
                ++pos_;
                break;
            }
            case S::value_ows:
                if (*p == ' ' || *p == '\t') {
                    ++p;
                    if (!line_byte()) return stop(fail(code(Error::line_too_long)));
                } else {
                    s_ = field_ == Field::other ? S::skip_value : S::value;
                }
                break;
            case S::value: {
                const char c = *p++;
                if (!line_byte()) return stop(fail(code(Error::line_too_long)));
                if (c == '\n') {
                    end_of_value();
                    cr_ = false;
                    s_ = S::line_start;
                    line_ = 0;
                    break;
                }
                if (cr_) return stop(fail(code(Error::bad_header)));  // CR not before LF
                if (c == '\r') {
                    cr_ = true;
                    break;
                }
                if (is_ctl(c)) return stop(fail(code(Error::bad_header)));
                if (field_ == Field::content_length) {
                    if (c >= '0' && c <= '9') {
                        if (value_space_ || value_num_ > (UINT64_MAX - 9) / 10) bad_length_ = true;
                        value_num_ = value_num_ * 10 + static_cast<uint64_t>(c - '0');
                        value_digits_ = true;
                    } else if (c == ' ' || c == '\t') {
                        value_space_ = value_digits_;
                    } else if (c == ',') {
                        end_of_value();
                    } else {
                        bad_length_ = true;
                    }
                } else if (c == ',') {
                    end_of_token();
                } else if (c == ';') {
                    params_ = true;  // parameters follow: ignored up to the next ','
                } else if (c != ' ' && c != '\t' && !params_) {
                    if (token_len_ < sizeof token_)
                        token_[token_len_++] = lower(c);
                    else
                        token_long_ = true;
                }
                break;
            }
            case S::body_length: {
                const uint64_t n = std::min<uint64_t>(remaining_, static_cast<uint64_t>(end - p));
                p += n;
                remaining_ -= n;
                if (remaining_ == 0) {
                    s_ = S::done;
                    return stop(Result::done);
                }
                break;
            }
            case S::body_close:
                p = end;
                break;
            case S::chunk_size: {
                const char c = *p++;
                if (!line_byte()) return stop(fail(code(Error::line_too_long)));
                if (const int h = hex_value(c); h >= 0) {
                    if (++hex_ > 16) return stop(fail(code(Error::chunk_too_large)));
                    remaining_ = remaining_ * 16 + static_cast<uint64_t>(h);
                    break;
                }
                if (hex_ == 0) return stop(fail(code(Error::bad_chunk)));
                if (c == ';' || c == ' ' || c == '\t' || c == '\r') {
                    s_ = S::chunk_ext;
                    break;
                }
                if (c != '\n') return stop(fail(code(Error::bad_chunk)));
                [[fallthrough]];
            }
            case S::chunk_ext: {
                if (s_ == S::chunk_ext) {
                    const auto* nl = static_cast<const char*>(
                        std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
                    const std::size_t n = static_cast<std::size_t>((nl ? nl + 1 : end) - p);
                    if (line_ + n > kMaxLine + 1) return stop(fail(code(Error::line_too_long)));
                    line_ = static_cast<uint16_t>(line_ + n);
                    p += n;
                    if (!nl) break;
                }
                // The chunk-size line is over.
                line_ = 0;
                hex_ = 0;
                if (remaining_ > kMaxBody) return stop(fail(code(Error::chunk_too_large)));
                if (remaining_ == 0) {
                    fields_ = 0;
                    s_ = S::trailer_start;
                } else {
                    s_ = S::chunk_data;
                }
                break;
            }
            case S::chunk_data: {
                const uint64_t n = std::min<uint64_t>(remaining_, static_cast<uint64_t>(end - p));
                p += n;
                remaining_ -= n;
                if (remaining_ == 0) s_ = S::chunk_cr;
                break;
            }
            case S::chunk_cr: {
                const char c = *p++;
                if (c == '\r')
                    s_ = S::chunk_lf;
                else if (c == '\n')
                    s_ = S::chunk_size;
                else
                    return stop(fail(code(Error::bad_chunk)));
                break;
            }
            case S::chunk_lf:
                if (*p++ != '\n') return stop(fail(code(Error::bad_chunk)));
                s_ = S::chunk_size;
                break;
            // The trailer section has the shape of the header section
            // (line_start above) and is parsed the same way, on purpose: its
            // empty line ends the message instead of the head, and its fields
            // are skipped. One shared helper would put a branch on every byte
            // of every header line.
            case S::trailer_start: {
                const char c = *p;
                if (c == '\r' || c == '\n') {
                    ++p;
                    if (c == '\r') {
                        s_ = S::trailer_lf;
                        break;
                    }
                    s_ = S::done;
                    return stop(Result::done);
                }
                if (++fields_ > kMaxFields) return stop(fail(code(Error::too_many_headers)));
                s_ = S::trailer;
                break;
            }
            case S::trailer_lf:
                if (*p++ != '\n') return stop(fail(code(Error::bad_chunk)));
                s_ = S::done;
                return stop(Result::done);
            case S::done:
            case S::failed:
                return stop(s_ == S::done ? Result::done : Result::failed);
        }
    }
    return stop(Result::more);
}

HttpReply::Result HttpReply::eof() {
    if (s_ == S::body_close) {
        s_ = S::done;
        return Result::done;
    }
    if (s_ == S::done) return Result::done;
    if (s_ == S::failed) return Result::failed;
    return fail(code(any_ ? Error::truncated : Error::empty_response));
}

std::string http_error_text(int code) {
    if (code <= 0) return "unexpected bytes";
    return std::string(iolab::http::to_string(static_cast<Error>(code - 1)));
}

}  // namespace loadgen
