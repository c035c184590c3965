// libFuzzer target for common/http's URL functions: parse_url, resolve_url,
// Url::to_string and build_request fed arbitrary text.
//
// A URL that parses has a host and a target starting with "/", prints back to
// a URL that parses to the same text, and gives a request whose request line
// and Host field hold no CR, LF or NUL (no header injection through a URL).
// resolve_url of any reference against it either throws UrlError or gives a
// URL with the same invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/http.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

void check_url(const iolab::http::Url& u) {
    check(!u.host.empty());
    check(!u.target.empty() && u.target[0] == '/');
    check(u.scheme == "http" || u.scheme == "https");
    iolab::http::Url again = iolab::http::parse_url(u.to_string());
    check(again.to_string() == u.to_string());
    std::string req = iolab::http::build_request("GET", u, "fuzz");
    const std::size_t end = req.find("\r\n\r\n");
    check(end != std::string::npos && end + 4 == req.size());
    for (std::size_t i = 0; i < end; ++i) {
        const char c = req[i];
        check(c != '\0');
        if (c == '\r') check(req[i + 1] == '\n');
        if (c == '\n') check(i > 0 && req[i - 1] == '\r');
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    // The text is "URL" or "URL\x01REF": a base and a reference to resolve.
    const std::size_t cut = text.find('\x01');
    std::string_view base_text = text.substr(0, cut);
    std::string_view ref = cut == std::string_view::npos ? text : text.substr(cut + 1);
    try {
        iolab::http::Url base = iolab::http::parse_url(base_text);
        check_url(base);
        try {
            check_url(iolab::http::resolve_url(base, ref));
        } catch (const iolab::http::UrlError&) {
        }
    } catch (const iolab::http::UrlError&) {
    }
    try {
        static const iolab::http::Url fixed =
            iolab::http::parse_url("http://example.test:8080/a/b/c?q=1");
        check_url(iolab::http::resolve_url(fixed, ref));
    } catch (const iolab::http::UrlError&) {
    }
    return 0;
}
