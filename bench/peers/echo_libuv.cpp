// peer-libuv — the suite's echo server written the way a libuv program is:
// a uv_tcp_t listener, uv_read_start with an alloc callback, uv_write with a
// completion callback, uv_signal_t for SIGTERM. A yardstick for lab 06's
// loop-echo (scripts/bench-event-loop.sh), not a lab program.
//
// Usage: peer-libuv [--host 127.0.0.1] [--port 0] [--max-clients N]
//                   [--out-limit BYTES] [-v]
//
// libuv owns the reads: the alloc callback hands it a buffer, the read
// callback gets the bytes. Each read becomes one uv_write request that owns
// its bytes until the write callback; libuv queues what the socket does not
// take at once. Out of descriptors, libuv sheds the backlog itself (it
// keeps a spare descriptor to accept and close with) and says nothing. The
// bound on a client's queue is ours: when
// uv_stream_get_write_queue_size passes --out-limit, reading stops
// (uv_read_stop) until a write callback finds it drained below the limit.
#include <netinet/in.h>
#include <uv.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/log.hpp"
#include "common/out_queue.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"

namespace {

struct Server;

struct Client {
    uv_tcp_t tcp{};
    Server* server = nullptr;
    std::string peer;
    bool reading = false;
    bool closing = false;
};

// One write: the bytes travel with the request.
struct WriteReq {
    uv_write_t req{};
    uv_buf_t buf{};
    Client* client = nullptr;
};

struct Server {
    uv_loop_t* loop = nullptr;
    uv_tcp_t listener{};
    uv_signal_t sigterm{}, sigint{};
    iolab::ServerOptions opts;
    std::size_t out_limit = iolab::OutQueue::kDefaultLimit;
    iolab::ServerStats stats;
    iolab::Log log{false};
    std::size_t open = 0;
    std::string where;  // the listening address, for messages
};

std::string peer_of(uv_tcp_t* tcp) {
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    char host[64] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
        return "[" + std::string(host) + "]:" + std::to_string(port);
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
}

void on_closed(uv_handle_t* h) {
    delete static_cast<Client*>(h->data);
}

void close_client(Client* c, const std::string& why) {
    if (c->closing) return;
    c->closing = true;
    --c->server->open;
    c->server->log.info("disconnect " + c->peer + " (" + why + ")");
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
}

void on_alloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    // A fresh buffer per read: it becomes the write's buffer, freed when the
    // write completes (libuv's usual echo: no copy, one allocation per read).
    const std::size_t n = std::min<std::size_t>(suggested, 64 * 1024);
    buf->base = static_cast<char*>(std::malloc(n));
    buf->len = buf->base ? n : 0;
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

void on_written(uv_write_t* req, int status) {
    auto* w = reinterpret_cast<WriteReq*>(req);
    Client* c = w->client;
    std::free(w->buf.base);
    delete w;
    if (c->closing) return;
    if (status < 0) {
        close_client(c, iolab::sys_message("write", c->peer, -status));
        return;
    }
    // The queue drained below the bound: read again.
    if (!c->reading && uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->tcp)) <=
                           c->server->out_limit) {
        c->reading = true;
        uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
    }
}

// After the client's FIN: close once every queued write has completed (a
// shutdown request completes after them).
void on_shutdown(uv_shutdown_t* req, int status) {
    auto* c = static_cast<Client*>(req->data);
    delete req;
    if (!c->closing)
        close_client(
            c, status < 0 ? iolab::sys_message("shutdown", c->peer, -status) : std::string("done"));
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Client*>(s->data);
    if (n <= 0) {
        std::free(buf->base);
        if (n == 0) return;  // EAGAIN: nothing this time
        if (n == UV_EOF) {
            uv_read_stop(s);
            c->reading = false;
            auto* req = new uv_shutdown_t;
            req->data = c;
            if (uv_shutdown(req, s, on_shutdown) != 0) {
                delete req;
                close_client(c, "done");
            }
            return;
        }
        close_client(c, iolab::sys_message("read", c->peer, static_cast<int>(-n)));
        return;
    }
    c->server->stats.add_in(static_cast<uint64_t>(n));
    auto* w = new WriteReq;
    w->client = c;
    w->buf = uv_buf_init(buf->base, static_cast<unsigned>(n));
    // uv_try_write first would save the request when the socket takes it
    // all; libuv's uv_write already tries the write at once when its queue
    // is empty, so one call does both.
    const int rc = uv_write(&w->req, s, &w->buf, 1, on_written);
    if (rc != 0) {
        std::free(w->buf.base);
        delete w;
        close_client(c, iolab::sys_message("write", c->peer, -rc));
        return;
    }
    c->server->stats.add_out(static_cast<uint64_t>(n));  // queued: libuv writes it all or fails
    if (uv_stream_get_write_queue_size(s) > c->server->out_limit) {
        uv_read_stop(s);  // backpressure: the client reads its echo first
        c->reading = false;
    }
}

void on_connection(uv_stream_t* listener, int status) {
    auto* srv = static_cast<Server*>(listener->data);
    if (status < 0) {
        srv->log.error(iolab::sys_message("accept", srv->where, -status));
        return;
    }
    auto* c = new Client;
    c->server = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
        return;
    }
    c->peer = peer_of(&c->tcp);
    if (srv->open >= srv->opts.max_clients) {
        ++srv->stats.refused;
        srv->log.info("refused " + c->peer + ": --max-clients reached");
        c->closing = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
        return;
    }
    ++srv->stats.connections;
    ++srv->open;
    srv->log.info("connect " + c->peer);
    uv_tcp_nodelay(&c->tcp, 1);
    c->reading = true;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
}

void close_any(uv_handle_t* h, void*) {
    if (uv_is_closing(h)) return;
    if (h->type == UV_TCP && h->data != nullptr && h->data != h->loop->data) {
        auto* c = static_cast<Client*>(h->data);
        close_client(c, "server stopping");
        return;
    }
    uv_close(h, nullptr);
}

void on_signal(uv_signal_t* sig, int) {
    // Close every handle (the clients, the listener, the signals): the loop
    // runs out of handles and uv_run returns.
    uv_walk(sig->loop, close_any, nullptr);
}

int serve(Server& srv) {
    srv.loop = uv_default_loop();
    srv.loop->data = &srv;
    uv_tcp_init(srv.loop, &srv.listener);
    srv.listener.data = &srv;
    // The suite's own listen (its errors name the call and the address), then
    // handed to libuv.
    iolab::Fd fd = iolab::listen_tcp(srv.opts.host, srv.opts.port, {.nonblocking = true});
    if (int rc = uv_tcp_open(&srv.listener, fd.get()); rc != 0)
        throw std::runtime_error(std::string("uv_tcp_open: ") + uv_strerror(rc));
    const int lfd = fd.release();
    srv.where = iolab::local_address(lfd).to_string();
    if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&srv.listener), 1024, on_connection);
        rc != 0)
        throw std::runtime_error(std::string("uv_listen: ") + uv_strerror(rc));
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_init(srv.loop, &srv.sigterm);
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_init(srv.loop, &srv.sigint);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    iolab::announce_listening(lfd);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(srv.loop);
    iolab::print_summary(srv.stats);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Server srv;
    CLI::App app{"Echo server on libuv (a yardstick for lab 06's loop-echo)"};
    iolab::add_server_options(app, "peer-libuv", srv.opts, iolab::kConnectionLogHelp);
    iolab::add_out_limit_option(app, srv.out_limit);
    IOLAB_PARSE(app, argc, argv);
    srv.log = iolab::Log(srv.opts.verbose);
    return iolab::guarded_main("peer-libuv", [&] {
        iolab::raise_nofile_limit();
        iolab::ignore_sigpipe();
        return serve(srv);
    });
}
