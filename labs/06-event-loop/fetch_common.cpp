// Pieces shared by the fetch engines; see fetch_common.hpp.
#include "labs/06-event-loop/fetch_common.hpp"

#include <CLI/CLI.hpp>

#include <sys/socket.h>

#include <cctype>
#include <cstdio>

#include "common/error.hpp"
#include "common/program.hpp"

namespace fetch {

void add_crawl_options(CLI::App& app, std::size_t& max_pages, int& server_delay_ms, double& timeout,
                       std::string& start_text) {
    app.add_option("--max-pages", max_pages, "Distinct pages fetched at most")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100000}))
        ->capture_default_str();
    app.add_option("--server-delay", server_delay_ms,
                   "Before each page, GET /delay/MS on the same server (makes /stats count "
                   "the crawler's concurrency)")
        ->check(CLI::Range(0, 60000))
        ->capture_default_str();
    app.add_option("--timeout", timeout, "Seconds per request")
        ->check(CLI::Range(0.001, 3600.0))
        ->capture_default_str();
    app.add_option("url", start_text, "Where to start (http://HOST:PORT/site/)")->required();
}

int parse_crawl_start(CLI::App& app, const std::string& start_text, iolab::http::Url& start) {
    try {
        start = iolab::http::parse_url(start_text);
    } catch (const iolab::http::UrlError& e) {
        return iolab::usage_error(app, start_text + ": " + e.what());
    }
    if (start.scheme != "http") return iolab::usage_error(app, start_text + ": http only");
    return 0;
}

std::string result_line(const Result& r) {
    if (!r.answered()) return r.url + " error=\"" + r.error + "\"";
    return r.url + " status=" + std::to_string(r.status) + " bytes=" + std::to_string(r.bytes);
}

std::string timeout_message(const Options& opts) {
    char text[64];
    std::snprintf(text, sizeof text, "timed out after %g s", opts.timeout);
    return text;
}

evloop::Future<iolab::SockAddr> resolve_async(evloop::EventLoop& loop,
                                              const iolab::http::Url& url) {
    try {
        evloop::Future<iolab::SockAddr> f(loop);
        f.set_result(iolab::SockAddr::from_numeric(url.host, url.port));
        return f;
    } catch (const std::invalid_argument&) {
        // A name: getaddrinfo(3) blocks (DNS), so it runs on the executor.
        return loop.run_in_executor(
            [host = url.host, port = url.port] { return iolab::resolve(host, port).front(); });
    }
}

iolab::Fd new_socket(const iolab::SockAddr& addr) {
    iolab::Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) iolab::throw_sys("socket", addr.to_string());
    return fd;
}

iolab::http::ResponseParser make_parser(const Options& opts) {
    iolab::http::Limits limits;
    limits.max_body = uint64_t{64} << 20;  // a bound on what one response may cost
    iolab::http::ResponseParser p(limits);
    if (!opts.keep_body) p.on_body([](std::string_view) {});  // counted, not kept
    return p;
}

void take_response(iolab::http::ResponseParser& p, Result& r) {
    r.status = p.response().status;
    r.bytes = p.body_bytes();
    if (auto ct = p.response().headers.get("Content-Type")) r.content_type = std::string(*ct);
    r.body = std::move(p.response().body);
}

std::vector<std::string> extract_links(std::string_view html) {
    std::vector<std::string> links;
    auto lower = [](char c) {
        return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    };
    for (std::size_t i = 0; i + 5 < html.size(); ++i) {
        // "href=" as a whole attribute name (after a space), any case.
        if (i == 0 || !std::isspace(static_cast<unsigned char>(html[i - 1]))) continue;
        if (lower(html[i]) != 'h' || lower(html[i + 1]) != 'r' || lower(html[i + 2]) != 'e' ||
            lower(html[i + 3]) != 'f' || html[i + 4] != '=')
            continue;
        std::size_t start = i + 5, end;
        if (html[start] == '"' || html[start] == '\'') {
            end = html.find(html[start], start + 1);
            ++start;
        } else {
            end = html.find_first_of(" \t\r\n>", start);
        }
        if (end == std::string_view::npos) break;
        if (end - start <= 2048) links.emplace_back(html.substr(start, end - start));
        i = end;
    }
    return links;
}

std::vector<iolab::http::Url> page_links(const Result& page, const std::string& authority) {
    std::vector<iolab::http::Url> out;
    if (!page.ok() || page.status != 200 || page.content_type.find("html") == std::string::npos)
        return out;
    const iolab::http::Url base = iolab::http::parse_url(page.url);
    for (const std::string& href : extract_links(page.body)) {
        try {
            iolab::http::Url u = iolab::http::resolve_url(base, href);  // fragment dropped
            if (u.scheme + "://" + u.authority() == authority) out.push_back(std::move(u));
        } catch (const iolab::http::UrlError&) {
            // mailto:, javascript:, malformed: not ours to follow
        }
    }
    return out;
}

}  // namespace fetch
