// http-testd — a small HTTP/1.1 server on libevent's evhttp, for the HTTP
// clients' demos and tests (http-get, fetcher, loadgen).
//
// Usage: http-testd [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                   [--site-pages N] [--max-bytes N] [--max-delay MS]
//
// Routes (GET and HEAD):
//   /bytes/N       N deterministic bytes, Content-Length. Byte i is
//                  (j * 31 + j / 251) & 0xFF with j = i % 65521, so every value
//                  0..255 occurs and a shifted or lost byte shows.
//   /chunked/N     the same N bytes, Transfer-Encoding: chunked (?chunk=K bytes
//                  per chunk, default 4096).
//   /delay/MS      "delayed MS ms\n" after MS milliseconds. A timer on the event
//                  loop: the loop keeps serving everyone else meanwhile.
//   /status/CODE   that status (200..599) with a one-line body.
//   /redirect/N    302 to /redirect/N-1 (a relative Location); /redirect/0 is 200.
//   /site/         an index page; /site/page/K (0 <= K < --site-pages) are pages
//                  linking to each other in every href form a crawler meets
//                  (absolute path, relative, full URL, ../, fragments, other
//                  hosts, mailto:), plus one link to a missing page.
//   /stats         JSON counters: requests, in_flight, max_in_flight (requests
//                  received and not yet answered, /stats itself excluded),
//                  connections, refused.
//
// Limits: N <= --max-bytes, MS <= --max-delay, request headers <= 16 KiB and
// bodies <= 64 KiB (evhttp answers 413/400 beyond), idle connections closed
// after 30 s. Bodies are served by reference from one static pattern table,
// so a large /bytes/N costs no memory per request. --max-clients: a request
// arriving on a connection beyond the limit gets 503 and the connection closes.
//
// Linux notes: the listening socket is made with common/socket (IPv4 or IPv6,
// port 0) and handed to evhttp; SIGINT/SIGTERM arrive on a signalfd watched by
// the loop. bytes_in/bytes_out in the summary are exact: every connection's
// bufferevent belongs to one rate-limit group (with no limit), whose totals
// libevent keeps.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

constexpr std::size_t kPatternPeriod = 65521;  // prime: misalignment shows

struct Options {
    ServerOptions server;
    int site_pages = 100;
    uint64_t max_bytes = uint64_t{256} << 20;
    int max_delay_ms = 60000;
};

// The body pattern, computed once and served by reference.
class Pattern {
  public:
    Pattern() {
        for (std::size_t j = 0; j < kPatternPeriod; ++j) {
            table_[j] = static_cast<unsigned char>((j * 31 + j / 251) & 0xFF);
        }
    }
    // Appends bytes [offset, offset + n) of the infinite pattern to `buf`,
    // without copying them.
    void add(evbuffer* buf, uint64_t offset, uint64_t n) const {
        while (n > 0) {
            std::size_t j = offset % kPatternPeriod;
            std::size_t take = static_cast<std::size_t>(std::min<uint64_t>(n, kPatternPeriod - j));
            evbuffer_add_reference(buf, table_.data() + j, take, nullptr, nullptr);
            offset += take;
            n -= take;
        }
    }

  private:
    std::array<unsigned char, kPatternPeriod> table_{};
};

template <typename T>
std::optional<T> parse_number(std::string_view s) {
    T v{};
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

struct Server;

// One evhttp connection we have seen a request on: its close callback keeps
// the open count honest.
struct ConnInfo {
    Server* server;
    std::string peer;
};

// A /delay request waiting for its timer.
struct Delayed {
    Server* server;
    evhttp_request* req;
    event* timer = nullptr;
    int ms = 0;
};

struct Server {
    const Options& opts;
    ServerStats stats;
    Log log;
    Pattern pattern;
    event_base* base = nullptr;
    evhttp* http = nullptr;
    ev_token_bucket_cfg* unlimited = nullptr;
    bufferevent_rate_limit_group* group = nullptr;

    std::map<evhttp_connection*, std::unique_ptr<ConnInfo>> conns;
    std::map<Delayed*, std::unique_ptr<Delayed>> delayed;
    uint64_t requests = 0;
    uint64_t in_flight = 0;
    uint64_t max_in_flight = 0;
    bool stopping = false;

    explicit Server(const Options& o) : opts(o), log(o.server.verbose) {}

    void begin_request() {
        ++requests;
        ++in_flight;
        max_in_flight = std::max(max_in_flight, in_flight);
    }
    void end_request() { --in_flight; }
};

void set_type(evhttp_request* req, const char* type) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
}

void reply_text(Server& s, evhttp_request* req, int code, const char* reason,
                const std::string& text) {
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, text.data(), text.size());
    set_type(req, "text/plain");
    evhttp_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
    s.end_request();
}

const char* reason_for(int code) {
    switch (code) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 204:
            return "No Content";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 304:
            return "Not Modified";
        case 400:
            return "Bad Request";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 418:
            return "I'm a teapot";
        case 500:
            return "Internal Server Error";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        default:
            return code < 300   ? "OK"
                   : code < 400 ? "Redirect"
                   : code < 500 ? "Client Error"
                                : "Server Error";
    }
}

void not_found(Server& s, evhttp_request* req, std::string_view why) {
    reply_text(s, req, 404, "Not Found", std::string(why) + "\n");
}

// /site/page/K as HTML: links in every form a crawler has to normalise.
std::string site_page(const Server& s, int k, const std::string& host) {
    const int n = s.opts.site_pages;
    std::string h = "<!doctype html>\n<html><head><title>page " + std::to_string(k) +
                    "</title></head>\n<body>\n<h1>Page " + std::to_string(k) + "</h1>\n<ul>\n";
    auto li = [&](const std::string& a) { h += "<li>" + a + "</li>\n"; };
    if (2 * k + 1 < n) {
        li("<a href=\"/site/page/" + std::to_string(2 * k + 1) + "\">left child</a>");
    }
    if (2 * k + 2 < n) li("<a href='" + std::to_string(2 * k + 2) + "'>right child</a>");
    li("<a class=\"x\" href=\"http://" + host + "/site/page/" + std::to_string((7 * k + 3) % n) +
       "\">a full URL</a>");
    li("<a href=\"../page/0#top\">home, with a fragment</a>");
    li("<A HREF=\"http://other.invalid/site/page/1\">another host</A>");
    li("<a href=\"mailto:nobody@example.invalid\">mail</a>");
    if (k == 0) li("<a href=\"/site/missing\">a missing page</a>");
    h += "</ul>\n</body></html>\n";
    return h;
}

void handle_site(Server& s, evhttp_request* req, std::string_view rest) {
    const char* host_hdr = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    std::string host = host_hdr ? host_hdr : "127.0.0.1";
    std::string body;
    if (rest.empty()) {
        body = "<html><body><p>A generated site of " + std::to_string(s.opts.site_pages) +
               " pages.</p><a href=\"page/0\">start</a></body></html>\n";
    } else if (rest.starts_with("page/")) {
        auto k = parse_number<int>(rest.substr(5));
        if (!k || *k < 0 || *k >= s.opts.site_pages) return not_found(s, req, "no such page");
        body = site_page(s, *k, host);
    } else {
        return not_found(s, req, "no such page");
    }
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, body.data(), body.size());
    set_type(req, "text/html");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
    s.end_request();
}

void delay_fired(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Delayed*>(arg);
    Server& s = *d->server;
    event_free(d->timer);
    evhttp_request* req = d->req;
    std::string text = "delayed " + std::to_string(d->ms) + " ms\n";
    s.delayed.erase(d);  // frees d
    // If the client went away meanwhile, evhttp detached the request and
    // send_reply frees it.
    reply_text(s, req, 200, "OK", text);
}

void handle_request(evhttp_request* req, void* arg) {
    Server& s = *static_cast<Server*>(arg);
    evhttp_connection* conn = evhttp_request_get_connection(req);
    if (conn && !s.conns.contains(conn)) {
        char* addr = nullptr;
        uint16_t port = 0;
        evhttp_connection_get_peer(conn, &addr, &port);
        std::string peer = std::string(addr ? addr : "?") + ":" + std::to_string(port);
        if (s.conns.size() >= s.opts.server.max_clients) {
            s.stats.refused.fetch_add(1);
            s.log.info("refused " + peer + ": --max-clients reached");
            evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
            s.begin_request();
            return reply_text(s, req, 503, "Service Unavailable", "too many clients\n");
        }
        auto info = std::make_unique<ConnInfo>(ConnInfo{&s, peer});
        evhttp_connection_set_closecb(
            conn,
            [](evhttp_connection* c, void* a) {
                auto* ci = static_cast<ConnInfo*>(a);
                Server& srv = *ci->server;
                srv.log.info("closed " + ci->peer);
                srv.conns.erase(c);
            },
            info.get());
        s.conns.emplace(conn, std::move(info));
        s.log.info("connection from " + peer);
    }
    const evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char* uri_text = evhttp_request_get_uri(req);
    s.log.info(std::string(cmd == EVHTTP_REQ_HEAD ? "HEAD " : "GET ") + uri_text);
    const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
    const char* path_c = uri ? evhttp_uri_get_path(uri) : nullptr;
    std::string_view path = path_c ? path_c : "/";

    if (path == "/stats") {
        nlohmann::json j = {{"requests", s.requests},
                            {"in_flight", s.in_flight},
                            {"max_in_flight", s.max_in_flight},
                            {"connections", s.stats.connections.load()},
                            {"open_connections", s.conns.size()},
                            {"refused", s.stats.refused.load()}};
        std::string body = j.dump() + "\n";
        evbuffer* buf = evbuffer_new();
        evbuffer_add(buf, body.data(), body.size());
        set_type(req, "application/json");
        evhttp_send_reply(req, 200, "OK", buf);
        evbuffer_free(buf);
        return;
    }
    s.begin_request();
    auto number_after = [&](std::string_view prefix) -> std::optional<uint64_t> {
        if (!path.starts_with(prefix)) return std::nullopt;
        return parse_number<uint64_t>(path.substr(prefix.size()));
    };
    if (path.starts_with("/bytes/") || path.starts_with("/chunked/")) {
        const bool chunked = path.starts_with("/chunked/");
        auto n = number_after(chunked ? "/chunked/" : "/bytes/");
        if (!n) return not_found(s, req, "expected a byte count");
        if (*n > s.opts.max_bytes) {
            return reply_text(s, req, 400, "Bad Request",
                              "at most " + std::to_string(s.opts.max_bytes) + " bytes\n");
        }
        set_type(req, "application/octet-stream");
        if (!chunked) {
            if (cmd == EVHTTP_REQ_HEAD) {
                // evhttp leaves Content-Length out of HEAD replies; give the
                // length a GET would have.
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length",
                                  std::to_string(*n).c_str());
            }
            evbuffer* buf = evbuffer_new();
            s.pattern.add(buf, 0, *n);
            evhttp_send_reply(req, 200, "OK", buf);
            evbuffer_free(buf);
            return s.end_request();
        }
        uint64_t chunk = 4096;
        if (const char* q = evhttp_uri_get_query(uri)) {
            std::string_view qs = q;
            if (qs.starts_with("chunk=")) {
                auto c = parse_number<uint64_t>(qs.substr(6));
                if (!c || *c == 0 || *c > (uint64_t{1} << 20)) {
                    return reply_text(s, req, 400, "Bad Request", "chunk=1..1048576\n");
                }
                chunk = *c;
            }
        }
        // All chunks are queued at once (by reference): evhttp frames each
        // evhttp_send_reply_chunk as one chunk. HEAD gets the headers only.
        evhttp_send_reply_start(req, 200, "OK");
        if (cmd != EVHTTP_REQ_HEAD) {
            evbuffer* buf = evbuffer_new();
            for (uint64_t off = 0; off < *n; off += chunk) {
                s.pattern.add(buf, off, std::min(chunk, *n - off));
                evhttp_send_reply_chunk(req, buf);
            }
            evbuffer_free(buf);
        }
        evhttp_send_reply_end(req);
        return s.end_request();
    }
    if (auto ms = number_after("/delay/")) {
        if (*ms > static_cast<uint64_t>(s.opts.max_delay_ms)) {
            return reply_text(s, req, 400, "Bad Request",
                              "at most " + std::to_string(s.opts.max_delay_ms) + " ms\n");
        }
        auto d = std::make_unique<Delayed>(Delayed{&s, req, nullptr, static_cast<int>(*ms)});
        d->timer = evtimer_new(s.base, delay_fired, d.get());
        timeval tv{static_cast<time_t>(*ms / 1000), static_cast<suseconds_t>(*ms % 1000 * 1000)};
        evtimer_add(d->timer, &tv);
        s.delayed.emplace(d.get(), std::move(d));
        return;
    }
    if (path.starts_with("/delay/")) return not_found(s, req, "expected milliseconds");
    if (path.starts_with("/status/")) {
        auto code = number_after("/status/");
        if (!code || *code < 200 || *code > 599) {
            return reply_text(s, req, 400, "Bad Request", "status 200..599\n");
        }
        int c = static_cast<int>(*code);
        return reply_text(s, req, c, reason_for(c), "status " + std::to_string(c) + "\n");
    }
    if (path.starts_with("/redirect/")) {
        auto n = number_after("/redirect/");
        if (!n || *n > 1000) return not_found(s, req, "expected 0..1000 redirects");
        if (*n == 0) return reply_text(s, req, 200, "OK", "redirects done\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
                          std::to_string(*n - 1).c_str());
        return reply_text(s, req, 302, "Found", "redirecting\n");
    }
    if (path == "/site" || path == "/site/") return handle_site(s, req, "");
    if (path.starts_with("/site/")) return handle_site(s, req, path.substr(6));
    if (path == "/") {
        return reply_text(s, req, 200, "OK",
                          "http-testd: /bytes/N /chunked/N /delay/MS /status/CODE /redirect/N "
                          "/site/ /stats\n");
    }
    not_found(s, req, "no such route");
}

int run(const Options& opts) {
    StopSignals stop;
    Server s(opts);
    ListenOptions lo;
    lo.nonblocking = true;
    Fd listener = listen_tcp(opts.server.host, opts.server.port, lo);
    announce_listening(listener.get());

    std::unique_ptr<event_base, decltype(&event_base_free)> base(event_base_new(),
                                                                 &event_base_free);
    if (!base) throw std::runtime_error("event_base_new failed");
    s.base = base.get();
    std::unique_ptr<evhttp, decltype(&evhttp_free)> http(evhttp_new(base.get()), &evhttp_free);
    if (!http) throw std::runtime_error("evhttp_new failed");
    s.http = http.get();
    evhttp_set_allowed_methods(http.get(), EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(http.get(), 16 * 1024);
    evhttp_set_max_body_size(http.get(), 64 * 1024);
    evhttp_set_timeout(http.get(), 30);
    evhttp_set_gencb(http.get(), handle_request, &s);

    // Every connection's bufferevent joins one unlimited rate-limit group: the
    // group's totals are the exact bytes in and out. The count of bufferevents
    // made is the count of accepted connections.
    s.unlimited = ev_token_bucket_cfg_new(EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX,
                                          EV_RATE_LIMIT_MAX, nullptr);
    s.group = bufferevent_rate_limit_group_new(base.get(), s.unlimited);
    evhttp_set_bevcb(
        http.get(),
        [](event_base* b, void* arg) -> bufferevent* {
            auto* srv = static_cast<Server*>(arg);
            srv->stats.connections.fetch_add(1);
            bufferevent* bev = bufferevent_socket_new(b, -1, BEV_OPT_CLOSE_ON_FREE);
            if (bev) bufferevent_add_to_rate_limit_group(bev, srv->group);
            return bev;
        },
        &s);

    if (evhttp_accept_socket_with_handle(http.get(), listener.get()) == nullptr) {
        throw_sys("evhttp_accept_socket", "listening socket");
    }
    (void)listener.release();  // evhttp's listener closes it

    event* sig = event_new(
        base.get(), stop.fd(), EV_READ | EV_PERSIST,
        [](evutil_socket_t, short, void* arg) {
            auto* srv = static_cast<Server*>(arg);
            srv->stopping = true;
            event_base_loopbreak(srv->base);
        },
        &s);
    event_add(sig, nullptr);
    event_base_dispatch(base.get());
    event_free(sig);

    // Stop: answer the requests still waiting for a timer, then free evhttp
    // (which closes every connection).
    while (!s.delayed.empty()) {
        Delayed* d = s.delayed.begin()->first;
        event_free(d->timer);
        evhttp_request* req = d->req;
        s.delayed.erase(s.delayed.begin());
        reply_text(s, req, 503, "Service Unavailable", "server stopping\n");
    }
    http.reset();  // frees every connection; their bufferevents go to finalizers
    s.conns.clear();
    // One pass of the loop runs the finalizers, which leave the group.
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    ev_uint64_t in = 0, out = 0;
    bufferevent_rate_limit_group_get_totals(s.group, &in, &out);
    s.stats.bytes_in = in;
    s.stats.bytes_out = out;
    bufferevent_rate_limit_group_free(s.group);
    ev_token_bucket_cfg_free(s.unlimited);
    base.reset();
    print_summary(s.stats);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options opts;
    CLI::App app{
        "http-testd: an evhttp server of test routes (/bytes, /chunked, /delay, "
        "/status, /redirect, /site, /stats)"};
    iolab::add_server_options(app, "http-testd", opts.server);
    app.add_option("--site-pages", opts.site_pages, "Pages of the generated /site/")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    app.add_option("--max-bytes", opts.max_bytes, "Largest N of /bytes/N and /chunked/N")
        ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 32))
        ->capture_default_str();
    app.add_option("--max-delay", opts.max_delay_ms, "Largest MS of /delay/MS")
        ->check(CLI::Range(0, 3600 * 1000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("http-testd", [&] { return run(opts); });
}
