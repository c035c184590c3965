// http-testd — a small HTTP/1.1 server on libevent's evhttp, for the HTTP
// clients' demos and tests (http-get, fetcher, loadgen).
//
// Usage: http-testd [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                   [--site-pages N] [--max-bytes N] [--max-delay MS]
//
// Routes (GET and HEAD), one table in route_table():
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
// Streaming: /bytes and /chunked never queue more than one window (64 KiB, or
// one chunk when a chunk is larger: queued by reference, it costs no copy) per
// request. The next window is produced when the connection's output buffer
// has drained (evhttp_send_reply_chunk_with_cb), so a client that reads slowly
// costs the server a constant, and one fill is a bounded amount of loop time.
//
// Framing (RFC 9112 section 6.3): evhttp 2.1 parses a request before any
// hook of ours runs and is lenient (it takes the first of several
// Content-Length fields, strtoll's "+0", ignores a Transfer-Encoding other
// than "chunked"), so check_framing() looks at the raw header fields evhttp
// kept and refuses what is ambiguous: several Content-Length fields, one that
// is not all digits, a Transfer-Encoding other than "chunked", Content-Length
// with Transfer-Encoding, a field name that is not a token, HTTP/1.1 without
// exactly one Host: 400. HTTP/1.2..1.9: 505 (with an HTTP/1.1 status line).
// Every refusal carries "Connection: close": evhttp reads nothing more of the
// connection while a request is being answered, then closes it, so bytes
// smuggled behind an ambiguous request are never parsed. A request line with
// another major version (HTTP/2.0) never reaches us: evhttp's own parser
// answers it 400 and closes (see README: why not 505 there).
//
// Limits: all in struct Limits below (and the README). --max-clients: a request
// arriving on a connection beyond the limit gets 503 and the connection closes.
//
// Linux notes: the listening socket is made with common/socket (IPv4 or IPv6,
// port 0) and handed to evhttp; SIGINT/SIGTERM arrive on a signalfd watched by
// the loop. bytes_in/bytes_out in the summary are exact: every connection's
// bufferevent belongs to one rate-limit group (with no limit), whose
// totals libevent keeps.

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>  // evhttp_request::major/minor (no getter in 2.1)
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
#include "common/http.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

// Every bound of the server, in one place (servers/http-testd/README.md
// repeats them). The command-line limits have their defaults here too.
struct Limits {
    static constexpr std::size_t window = 64 * 1024;          // queued bytes per streaming response
    static constexpr uint64_t default_chunk = 4096;           // /chunked/N without ?chunk=
    static constexpr uint64_t max_chunk = uint64_t{1} << 20;  // ?chunk=K
    static constexpr std::size_t copy_below = 1024;           // smaller chunks are framed by us
    static constexpr uint64_t max_redirects = 1000;           // /redirect/N
    static constexpr int min_status = 200, max_status = 599;  // /status/CODE
    static constexpr std::size_t max_head = 16 * 1024;        // request line + header fields
    static constexpr std::size_t max_body = 64 * 1024;        // request body (evhttp: 413 beyond)
    static constexpr int idle_seconds = 30;                   // idle connections are closed
    static constexpr uint64_t default_max_bytes = uint64_t{256} << 20;  // --max-bytes
    static constexpr int default_max_delay_ms = 60000;                  // --max-delay
    static constexpr int default_site_pages = 100;                      // --site-pages
};

constexpr std::size_t kPatternPeriod = 65521;  // prime: misalignment shows

struct Options {
    ServerOptions server;
    int site_pages = Limits::default_site_pages;
    uint64_t max_bytes = Limits::default_max_bytes;
    int max_delay_ms = Limits::default_max_delay_ms;
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
    void add_reference(evbuffer* buf, uint64_t offset, uint64_t n) const {
        while (n > 0) {
            std::size_t j = offset % kPatternPeriod;
            std::size_t take = static_cast<std::size_t>(std::min<uint64_t>(n, kPatternPeriod - j));
            evbuffer_add_reference(buf, table_.data() + j, take, nullptr, nullptr);
            offset += take;
            n -= take;
        }
    }
    // Appends a copy of bytes [offset, offset + n) to `out`.
    void append(std::string& out, uint64_t offset, std::size_t n) const {
        while (n > 0) {
            std::size_t j = offset % kPatternPeriod;
            std::size_t take = std::min<std::size_t>(n, kPatternPeriod - j);
            out.append(reinterpret_cast<const char*>(table_.data()) + j, take);
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
struct ConnInfo;

// A response still in progress: a /delay timer or a streaming body. Owned by
// its connection's ConnInfo, so that a connection that goes away takes it along.
struct Pending {
    Server* server = nullptr;
    ConnInfo* conn = nullptr;
    evhttp_request* req = nullptr;
    Pending() = default;
    Pending(const Pending&) = delete;
    Pending& operator=(const Pending&) = delete;
    virtual ~Pending() = default;
};

// One evhttp connection we have seen a request on: its close callback keeps
// the open count honest and drops a response left unfinished.
struct ConnInfo {
    Server* server;
    evhttp_connection* evcon;
    std::string peer;
    std::unique_ptr<Pending> pending;
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
    uint64_t requests = 0;
    uint64_t in_flight = 0;
    uint64_t max_in_flight = 0;

    explicit Server(const Options& o) : opts(o), log(o.server.verbose) {}

    void begin_request() {
        ++requests;
        ++in_flight;
        max_in_flight = std::max(max_in_flight, in_flight);
    }
    void end_request() { --in_flight; }
};

// What a route handler gets: the request and its parsed parts.
struct Call {
    Server& s;
    evhttp_request* req;
    ConnInfo* conn;
    bool head;              // HEAD: headers only
    std::string_view path;  // "/bytes/10"
    std::string_view rest;  // after the route's prefix: "10"
    const evhttp_uri* uri;
};

void set_header(evhttp_request* req, const char* name, const std::string& value) {
    evhttp_add_header(evhttp_request_get_output_headers(req), name, value.c_str());
}

void send_body(Server& s, evhttp_request* req, int code, const char* reason, const char* type,
               const std::string& body, bool counted = true) {
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, body.data(), body.size());
    set_header(req, "Content-Type", type);
    evhttp_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
    if (counted) s.end_request();
}

void reply_text(Server& s, evhttp_request* req, int code, const char* reason,
                const std::string& text) {
    send_body(s, req, code, reason, "text/plain", text);
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
        case 505:
            return "HTTP Version Not Supported";
        default:
            return code < 300   ? "OK"
                   : code < 400 ? "Redirect"
                   : code < 500 ? "Client Error"
                                : "Server Error";
    }
}

void not_found(const Call& c, std::string_view why) {
    reply_text(c.s, c.req, 404, "Not Found", std::string(why) + "\n");
}

void bad_request(const Call& c, const std::string& why) {
    reply_text(c.s, c.req, 400, "Bad Request", why + "\n");
}

// ---- streaming bodies (/bytes, /chunked) -------------------------------------

// Sends bytes [0, total) of the pattern, one window at a time: fill() queues at
// most Limits::window bytes (or one larger chunk, by reference) and asks evhttp
// to call drained() once the connection's output buffer is empty again.
class Stream : public Pending {
  public:
    Stream(uint64_t total, uint64_t chunk, bool chunked)
        : total_(total), chunk_(chunk), chunked_(chunked) {}

    void start() { fill(); }

  private:
    static void drained(evhttp_connection*, void* arg) { static_cast<Stream*>(arg)->fill(); }

    void fill() {
        if (filling_) return;  // evhttp called back from inside a fill: the loop goes on
        if (offset_ == total_) return finish();
        filling_ = true;
        if (chunked_ && chunk_ < Limits::copy_below) {
            queue_small_chunks();
        } else {
            queue_pieces();
        }
        // evhttp turns reading back on with every chunk, to hear the client
        // close; but a client that half-closes after its request
        // (shutdown(SHUT_WR)) gives the same EOF, and evhttp would drop the
        // response after its first window. While we stream, reading stays
        // off: a client that really goes away shows up as a failed write
        // (its RST), and one that vanishes as the write timeout.
        bufferevent_disable(evhttp_connection_get_bufferevent(conn->evcon), EV_READ);
        filling_ = false;
    }

    // Pieces by reference (no copy): one Content-Length window, or whole
    // chunks up to a window (evhttp frames each call as one chunk).
    void queue_pieces() {
        const uint64_t piece = chunked_ ? chunk_ : Limits::window;
        evbuffer* buf = evbuffer_new();
        uint64_t queued = 0;
        while (true) {
            const uint64_t n = std::min(piece, total_ - offset_);
            server->pattern.add_reference(buf, offset_, n);
            offset_ += n;
            queued += n;
            if (queued >= Limits::window || offset_ == total_) break;
            evhttp_send_reply_chunk(req, buf);
        }
        evhttp_send_reply_chunk_with_cb(req, buf, drained, this);
        evbuffer_free(buf);
    }

    // Small chunks: evhttp would spend a buffer chain (about 1 KiB) on each, so
    // we frame a window of them ourselves into one copy, written straight to
    // the connection's output after the chunks already queued; the window's
    // last chunk goes through evhttp, which registers drained().
    void queue_small_chunks() {
        std::string out;
        out.reserve(Limits::window);
        char size_line[24];
        while (total_ - offset_ > chunk_) {
            const auto n = static_cast<std::size_t>(chunk_);
            if (out.size() + n + 2 * sizeof size_line > Limits::window) break;
            auto [end, ec] = std::to_chars(size_line, size_line + 16, n, 16);
            out.append(size_line, end);
            out.append("\r\n");
            server->pattern.append(out, offset_, n);
            out.append("\r\n");
            offset_ += n;
        }
        if (!out.empty()) {
            bufferevent* bev = evhttp_connection_get_bufferevent(conn->evcon);
            evbuffer_add(bufferevent_get_output(bev), out.data(), out.size());
        }
        const uint64_t n = std::min(chunk_, total_ - offset_);
        evbuffer* buf = evbuffer_new();
        server->pattern.add_reference(buf, offset_, n);
        offset_ += n;
        evhttp_send_reply_chunk_with_cb(req, buf, drained, this);
        evbuffer_free(buf);
    }

    // The last step: evhttp_send_reply_end may finish the response at once
    // and free the connection (its close callback runs), so we leave the
    // connection's hands first and are deleted when this returns.
    void finish() {
        std::unique_ptr<Pending> self = std::move(conn->pending);
        server->end_request();
        bufferevent* bev = evhttp_connection_get_bufferevent(conn->evcon);
        evhttp_send_reply_end(req);
        // Chunked: evhttp has queued the last chunk ("0\r\n\r\n"), so the
        // connection is still there, and has turned reading back on. Off again
        // until those bytes are out (see fill()); evhttp turns it on for the
        // next request.
        if (chunked_) bufferevent_disable(bev, EV_READ);
    }

    uint64_t total_;
    uint64_t chunk_;
    bool chunked_;
    uint64_t offset_ = 0;
    bool filling_ = false;
};

void start_stream(const Call& c, uint64_t n, uint64_t chunk, bool chunked) {
    set_header(c.req, "Content-Type", "application/octet-stream");
    if (!chunked) {
        // With a Content-Length, evhttp sends the pieces unframed.
        set_header(c.req, "Content-Length", std::to_string(n));
    }
    if (c.head) {
        // evhttp leaves Content-Length out of HEAD replies unless it is set,
        // as above: the length a GET would have.
        if (chunked) {
            evhttp_send_reply_start(c.req, 200, "OK");
            evhttp_send_reply_end(c.req);
        } else {
            evhttp_send_reply(c.req, 200, "OK", nullptr);
        }
        return c.s.end_request();
    }
    evhttp_send_reply_start(c.req, 200, "OK");
    // evhttp frames chunks only when it chose chunked encoding (an HTTP/1.1
    // client); an HTTP/1.0 client gets the body bare, ended by the close. The
    // Stream frames small chunks itself, so it must know what evhttp chose.
    const bool framed = chunked && evhttp_find_header(evhttp_request_get_output_headers(c.req),
                                                      "Transfer-Encoding") != nullptr;
    auto stream = std::make_unique<Stream>(n, chunk, framed);
    stream->server = &c.s;
    stream->conn = c.conn;
    stream->req = c.req;
    Stream* raw = stream.get();
    c.conn->pending = std::move(stream);
    raw->start();
}

// ---- routes -----------------------------------------------------------------

std::optional<uint64_t> byte_count(const Call& c) {
    auto n = parse_number<uint64_t>(c.rest);
    if (!n) {
        not_found(c, "expected a byte count");
        return std::nullopt;
    }
    if (*n > c.s.opts.max_bytes) {
        bad_request(c, "at most " + std::to_string(c.s.opts.max_bytes) + " bytes");
        return std::nullopt;
    }
    return n;
}

void route_bytes(const Call& c) {
    if (auto n = byte_count(c)) start_stream(c, *n, Limits::window, false);
}

void route_chunked(const Call& c) {
    auto n = byte_count(c);
    if (!n) return;
    uint64_t chunk = Limits::default_chunk;
    if (const char* q = evhttp_uri_get_query(c.uri)) {
        std::string_view qs = q;
        if (qs.starts_with("chunk=")) {
            auto k = parse_number<uint64_t>(qs.substr(6));
            if (!k || *k == 0 || *k > Limits::max_chunk) {
                return bad_request(c, "chunk=1.." + std::to_string(Limits::max_chunk));
            }
            chunk = *k;
        }
    }
    start_stream(c, *n, chunk, true);
}

// A /delay request waiting for its timer.
struct Delayed : Pending {
    event* timer = nullptr;
    int ms = 0;
    ~Delayed() override {
        if (timer) event_free(timer);
    }
};

void delay_fired(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Delayed*>(arg);
    Server& s = *d->server;
    evhttp_request* req = d->req;
    std::string text = "delayed " + std::to_string(d->ms) + " ms\n";
    d->conn->pending.reset();  // frees d and its timer
    reply_text(s, req, 200, "OK", text);
}

void route_delay(const Call& c) {
    auto ms = parse_number<uint64_t>(c.rest);
    if (!ms) return not_found(c, "expected milliseconds");
    if (*ms > static_cast<uint64_t>(c.s.opts.max_delay_ms)) {
        return bad_request(c, "at most " + std::to_string(c.s.opts.max_delay_ms) + " ms");
    }
    auto d = std::make_unique<Delayed>();
    d->server = &c.s;
    d->conn = c.conn;
    d->req = c.req;
    d->ms = static_cast<int>(*ms);
    d->timer = evtimer_new(c.s.base, delay_fired, d.get());
    timeval tv{static_cast<time_t>(*ms / 1000), static_cast<suseconds_t>(*ms % 1000 * 1000)};
    evtimer_add(d->timer, &tv);
    c.conn->pending = std::move(d);
}

void route_status(const Call& c) {
    auto code = parse_number<int>(c.rest);
    if (!code || *code < Limits::min_status || *code > Limits::max_status) {
        return bad_request(c, "status " + std::to_string(Limits::min_status) + ".." +
                                  std::to_string(Limits::max_status));
    }
    reply_text(c.s, c.req, *code, reason_for(*code), "status " + std::to_string(*code) + "\n");
}

void route_redirect(const Call& c) {
    auto n = parse_number<uint64_t>(c.rest);
    if (!n || *n > Limits::max_redirects) {
        return not_found(c, "expected 0.." + std::to_string(Limits::max_redirects) + " redirects");
    }
    if (*n == 0) return reply_text(c.s, c.req, 200, "OK", "redirects done\n");
    set_header(c.req, "Location", std::to_string(*n - 1));
    reply_text(c.s, c.req, 302, "Found", "redirecting\n");
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

void route_site_index(const Call& c) {
    send_body(c.s, c.req, 200, "OK", "text/html",
              "<html><body><p>A generated site of " + std::to_string(c.s.opts.site_pages) +
                  " pages.</p><a href=\"page/0\">start</a></body></html>\n");
}

void route_site_page(const Call& c) {
    if (c.rest.empty()) return route_site_index(c);
    if (!c.rest.starts_with("page/")) return not_found(c, "no such page");
    auto k = parse_number<int>(c.rest.substr(5));
    if (!k || *k < 0 || *k >= c.s.opts.site_pages) return not_found(c, "no such page");
    const char* host = evhttp_find_header(evhttp_request_get_input_headers(c.req), "Host");
    send_body(c.s, c.req, 200, "OK", "text/html", site_page(c.s, *k, host ? host : "127.0.0.1"));
}

void route_index(const Call& c) {
    reply_text(c.s, c.req, 200, "OK",
               "http-testd: /bytes/N /chunked/N /delay/MS /status/CODE /redirect/N /site/ "
               "/stats\n");
}

void route_stats(const Call& c) {
    const Server& s = c.s;
    nlohmann::json j = {{"requests", s.requests},
                        {"in_flight", s.in_flight},
                        {"max_in_flight", s.max_in_flight},
                        {"connections", s.stats.connections.load()},
                        {"open_connections", s.conns.size()},
                        {"refused", s.stats.refused.load()}};
    send_body(c.s, c.req, 200, "OK", "application/json", j.dump() + "\n", false);
}

struct Route {
    std::string_view path;  // the whole path, or a prefix when `prefix`
    bool prefix;
    bool counted;  // counts in requests / in_flight (everything but /stats)
    void (*handler)(const Call&);
};

// The routes, first match wins.
constexpr std::array<Route, 9> kRoutes{{
    {"/stats", false, false, route_stats},
    {"/bytes/", true, true, route_bytes},
    {"/chunked/", true, true, route_chunked},
    {"/delay/", true, true, route_delay},
    {"/status/", true, true, route_status},
    {"/redirect/", true, true, route_redirect},
    {"/site/", true, true, route_site_page},
    {"/site", false, true, route_site_index},
    {"/", false, true, route_index},
}};

// ---- framing and connections --------------------------------------------------

bool is_token(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
        auto u = static_cast<unsigned char>(ch);
        return (std::isalnum(u) != 0) ||
               std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    });
}

// The request's framing problem by RFC 9112 section 6.3 (see the header
// comment), as a status and a reason; nullopt when the request is sound.
std::optional<std::pair<int, std::string>> check_framing(evhttp_request* req) {
    if (req->major != 1 || req->minor > 1) {
        return std::pair{505, "HTTP/" + std::to_string(req->major) + "." +
                                  std::to_string(req->minor) + " is not supported"};
    }
    int hosts = 0, lengths = 0, encodings = 0;
    std::string_view length, encoding;
    const evkeyvalq* fields = evhttp_request_get_input_headers(req);
    for (const evkeyval* f = fields->tqh_first; f != nullptr; f = f->next.tqe_next) {
        std::string_view name = f->key;
        if (!is_token(name)) return std::pair{400, "malformed header field name"};
        if (http::iequals(name, "Host")) ++hosts;
        if (http::iequals(name, "Content-Length")) ++lengths, length = f->value;
        if (http::iequals(name, "Transfer-Encoding")) ++encodings, encoding = f->value;
    }
    if (hosts > 1 || (req->minor == 1 && hosts == 0)) {
        return std::pair{400, "HTTP/1.1 needs exactly one Host field"};
    }
    if (lengths > 1) return std::pair{400, "several Content-Length fields"};
    if (lengths == 1 && (length.empty() || length.size() > 18 ||
                         !std::all_of(length.begin(), length.end(),
                                      [](char ch) { return ch >= '0' && ch <= '9'; }))) {
        return std::pair{400, "Content-Length is not a decimal number"};
    }
    if (encodings > 0 && lengths > 0) {
        return std::pair{400, "Content-Length together with Transfer-Encoding"};
    }
    if (encodings > 1 || (encodings == 1 && !http::iequals(encoding, "chunked")) ||
        (encodings == 1 && req->minor == 0)) {
        return std::pair{400, "unsupported Transfer-Encoding"};
    }
    return std::nullopt;
}

// Answers a request whose framing cannot be trusted, and closes the
// connection after the answer: evhttp reads nothing more from it meanwhile.
void refuse(Server& s, evhttp_request* req, int status, const std::string& why) {
    s.log.info("refused a request: " + why);
    req->major = 1;  // the status line: HTTP/1.1, whatever the request said
    req->minor = 1;
    set_header(req, "Connection", "close");
    send_body(s, req, status, reason_for(status), "text/plain", why + "\n", false);
}

// The connection's close callback: forgets it, and drops a response still in
// progress. evhttp frees a request still queued on the connection itself; one
// it already detached (the client went away mid-response) is ours to free.
void connection_closed(evhttp_connection* evcon, void* arg) {
    auto* ci = static_cast<ConnInfo*>(arg);
    Server& s = *ci->server;
    s.log.info("closed " + ci->peer);
    if (ci->pending) {
        evhttp_request* req = ci->pending->req;
        ci->pending.reset();
        if (evhttp_request_get_connection(req) == nullptr) evhttp_request_free(req);
        s.end_request();
    }
    s.conns.erase(evcon);
}

// The ConnInfo of a request's connection, made on its first request; nullptr
// when --max-clients is reached (the request is then answered 503).
ConnInfo* admit(Server& s, evhttp_request* req) {
    evhttp_connection* evcon = evhttp_request_get_connection(req);
    if (evcon == nullptr) return nullptr;
    if (auto it = s.conns.find(evcon); it != s.conns.end()) return it->second.get();
    char* addr = nullptr;
    uint16_t port = 0;
    evhttp_connection_get_peer(evcon, &addr, &port);
    std::string peer = std::string(addr ? addr : "?") + ":" + std::to_string(port);
    if (s.conns.size() >= s.opts.server.max_clients) {
        s.stats.refused.fetch_add(1);
        s.log.info("refused " + peer + ": --max-clients reached");
        set_header(req, "Connection", "close");
        send_body(s, req, 503, "Service Unavailable", "text/plain", "too many clients\n", false);
        ++s.requests;
        return nullptr;
    }
    auto info = std::make_unique<ConnInfo>(ConnInfo{&s, evcon, peer, nullptr});
    evhttp_connection_set_closecb(evcon, connection_closed, info.get());
    s.log.info("connection from " + peer);
    return s.conns.emplace(evcon, std::move(info)).first->second.get();
}

void handle_request(evhttp_request* req, void* arg) {
    Server& s = *static_cast<Server*>(arg);
    ConnInfo* conn = admit(s, req);
    if (conn == nullptr) return;
    if (auto problem = check_framing(req)) {
        return refuse(s, req, problem->first, problem->second);
    }
    const bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
    const char* uri_text = evhttp_request_get_uri(req);
    s.log.info(std::string(head ? "HEAD " : "GET ") + (uri_text ? uri_text : "?"));
    const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
    const char* path_c = uri ? evhttp_uri_get_path(uri) : nullptr;
    std::string_view path = path_c && *path_c ? path_c : "/";
    for (const Route& r : kRoutes) {
        if (r.prefix ? !path.starts_with(r.path) : path != r.path) continue;
        if (r.counted) s.begin_request();
        return r.handler(Call{s, req, conn, head, path, path.substr(r.path.size()), uri});
    }
    s.begin_request();
    reply_text(s, req, 404, "Not Found", "no such route\n");
}

// Every connection's bufferevent joins one unlimited rate-limit group: the
// group's totals are the exact bytes in and out. The count of bufferevents
// made is the count of accepted connections.
bufferevent* new_bufferevent(event_base* b, void* arg) {
    auto* srv = static_cast<Server*>(arg);
    srv->stats.connections.fetch_add(1);
    bufferevent* bev = bufferevent_socket_new(b, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev) bufferevent_add_to_rate_limit_group(bev, srv->group);
    return bev;
}

// Stop: answer the requests still waiting for a timer, then free evhttp
// (which closes every connection and with them the streams in progress).
void shut_down(Server& s, std::unique_ptr<evhttp, decltype(&evhttp_free)>& http) {
    for (auto& [evcon, ci] : s.conns) {
        if (dynamic_cast<Delayed*>(ci->pending.get()) == nullptr) continue;
        evhttp_request* req = ci->pending->req;
        ci->pending.reset();
        reply_text(s, req, 503, "Service Unavailable", "server stopping\n");
    }
    http.reset();  // frees every connection; their bufferevents go to finalizers
    s.conns.clear();
    // One pass of the loop runs the finalizers, which leave the group.
    event_base_loop(s.base, EVLOOP_NONBLOCK);
    ev_uint64_t in = 0, out = 0;
    bufferevent_rate_limit_group_get_totals(s.group, &in, &out);
    s.stats.bytes_in = in;
    s.stats.bytes_out = out;
}

int run(const Options& opts) {
    StopSignals stop;
    Server s(opts);
    ListenOptions lo;
    lo.nonblocking = true;
    Fd listener = listen_tcp(opts.server.host, opts.server.port, lo);
    // TCP_NODELAY, inherited by every accepted socket (Linux copies it from
    // the listener): a response written in pieces (a chunked head, then its
    // chunks) must not wait for the client's delayed ACK behind Nagle's
    // algorithm — 40 ms per request on a kept-alive connection without it.
    set_int_option(listener.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY listener");
    announce_listening(listener.get());

    std::unique_ptr<event_base, decltype(&event_base_free)> base(event_base_new(),
                                                                 &event_base_free);
    if (!base) throw std::runtime_error("event_base_new failed");
    s.base = base.get();
    std::unique_ptr<evhttp, decltype(&evhttp_free)> http(evhttp_new(base.get()), &evhttp_free);
    if (!http) throw std::runtime_error("evhttp_new failed");
    s.http = http.get();
    evhttp_set_allowed_methods(http.get(), EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(http.get(), Limits::max_head);
    evhttp_set_max_body_size(http.get(), Limits::max_body);
    evhttp_set_timeout(http.get(), Limits::idle_seconds);
    evhttp_set_gencb(http.get(), handle_request, &s);
    s.unlimited = ev_token_bucket_cfg_new(EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX,
                                          EV_RATE_LIMIT_MAX, nullptr);
    s.group = bufferevent_rate_limit_group_new(base.get(), s.unlimited);
    evhttp_set_bevcb(http.get(), new_bufferevent, &s);

    if (evhttp_accept_socket_with_handle(http.get(), listener.get()) == nullptr) {
        throw_sys("evhttp_accept_socket", "listening socket");
    }
    (void)listener.release();  // evhttp's listener closes it

    event* sig = event_new(
        base.get(), stop.fd(), EV_READ | EV_PERSIST,
        [](evutil_socket_t, short, void* arg) {
            event_base_loopbreak(static_cast<Server*>(arg)->base);
        },
        &s);
    event_add(sig, nullptr);
    event_base_dispatch(base.get());
    event_free(sig);

    shut_down(s, http);
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
