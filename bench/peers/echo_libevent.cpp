// peer-libevent — the suite's echo server written the way a libevent 2
// program is: an evconnlistener accepts, a bufferevent per client, the read
// callback moves the input buffer to the output buffer (evbuffer_add_buffer:
// no copy, the chains change hands), an evsignal ends the loop. A yardstick
// for lab 06's loop-echo (scripts/bench-event-loop.sh), not a lab program.
//
// Usage: peer-libevent [--host 127.0.0.1] [--port 0] [--max-clients N]
//                      [--out-limit BYTES] [-v]
//
// Backpressure with watermarks, libevent's idiom: when the output buffer
// holds more than --out-limit the client's reading is disabled, and the
// write watermark (the write callback fires once the output has drained to
// half the limit) enables it again.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <unordered_set>

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
    Server* server = nullptr;
    bufferevent* bev = nullptr;
    std::string peer;
    bool eof = false;  // the client sent FIN: close once the output is out
};

struct Server {
    event_base* base = nullptr;
    iolab::ServerOptions opts;
    std::size_t out_limit = iolab::OutQueue::kDefaultLimit;
    iolab::ServerStats stats;
    iolab::Log log{false};
    std::unordered_set<Client*> clients;
    std::string where;  // the listening address, for messages
};

void close_client(Client* c, const std::string& why) {
    c->server->log.info("disconnect " + c->peer + " (" + why + ")");
    c->server->clients.erase(c);
    bufferevent_free(c->bev);  // BEV_OPT_CLOSE_ON_FREE: closes the socket
    delete c;
}

void on_read(bufferevent* bev, void* arg) {
    auto* c = static_cast<Client*>(arg);
    evbuffer* in = bufferevent_get_input(bev);
    evbuffer* out = bufferevent_get_output(bev);
    const std::size_t n = evbuffer_get_length(in);
    c->server->stats.add_in(n);
    evbuffer_add_buffer(out, in);
    if (evbuffer_get_length(out) > c->server->out_limit)
        bufferevent_disable(bev, EV_READ);  // the client reads its echo first
}

// The output drained to the low watermark (or empty).
void on_write(bufferevent* bev, void* arg) {
    auto* c = static_cast<Client*>(arg);
    if (c->eof && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        close_client(c, "done");
        return;
    }
    if (!c->eof) bufferevent_enable(bev, EV_READ);
}

void on_event(bufferevent* bev, short what, void* arg) {
    auto* c = static_cast<Client*>(arg);
    if (what & BEV_EVENT_EOF) {
        c->eof = true;
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) close_client(c, "done");
        // else on_write closes it once the echo is out (watermark 0 then)
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        const int err = EVUTIL_SOCKET_ERROR();
        close_client(
            c, iolab::sys_message((what & BEV_EVENT_READING) ? "read" : "write", c->peer, err));
    }
}

// bytes_out: what left the output buffer for the socket. libevent counts
// nothing per client, so an evbuffer callback reports every drain.
void on_output_change(evbuffer*, const evbuffer_cb_info* info, void* arg) {
    if (info->n_deleted > 0) static_cast<Server*>(arg)->stats.add_out(info->n_deleted);
}

void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int len, void* arg) {
    auto* srv = static_cast<Server*>(arg);
    iolab::SockAddr addr;
    std::memcpy(&addr.storage, sa, std::min(sizeof addr.storage, static_cast<std::size_t>(len)));
    addr.len = static_cast<socklen_t>(len);
    const std::string peer = addr.to_string();
    if (srv->clients.size() >= srv->opts.max_clients) {
        ++srv->stats.refused;
        srv->log.info("refused " + peer + ": --max-clients reached");
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new Client;
    c->server = srv;
    c->peer = peer;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == nullptr) {
        srv->log.error("bufferevent_socket_new " + peer + ": failed");
        evutil_closesocket(fd);
        delete c;
        return;
    }
    ++srv->stats.connections;
    srv->clients.insert(c);
    srv->log.info("connect " + peer);
    // libevent reads and writes at most 16 KiB per call by default; the
    // other servers move 64 KiB at a time, so this one may too.
    bufferevent_set_max_single_read(c->bev, 64 * 1024);
    bufferevent_set_max_single_write(c->bev, 64 * 1024);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, srv->out_limit / 2, 0);
    evbuffer_add_cb(bufferevent_get_output(c->bev), on_output_change, srv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

// Out of descriptors (EMFILE, ENFILE) the listening socket stays readable:
// accepting again at once would spin and log without end. Rest 100 ms.
void on_resume(evutil_socket_t, short, void* arg) {
    evconnlistener_enable(static_cast<evconnlistener*>(arg));
}

void on_accept_error(evconnlistener* l, void* arg) {
    auto* srv = static_cast<Server*>(arg);
    const int err = EVUTIL_SOCKET_ERROR();
    srv->log.error(iolab::sys_message("accept", srv->where, err));
    evconnlistener_disable(l);
    const timeval rest{0, 100'000};
    event_base_once(srv->base, -1, EV_TIMEOUT, on_resume, l, &rest);
}

void on_signal(evutil_socket_t, short, void* arg) {
    event_base_loopbreak(static_cast<Server*>(arg)->base);
}

int serve(Server& srv) {
    srv.base = event_base_new();
    if (srv.base == nullptr) throw std::runtime_error("event_base_new failed");
    // The suite's own listen (its errors name the call and the address).
    iolab::Fd fd = iolab::listen_tcp(srv.opts.host, srv.opts.port, {.nonblocking = true});
    const int lfd = fd.get();
    srv.where = iolab::local_address(lfd).to_string();
    evconnlistener* listener =
        evconnlistener_new(srv.base, on_accept, &srv, LEV_OPT_CLOSE_ON_FREE, -1, fd.release());
    if (listener == nullptr) throw std::runtime_error("evconnlistener_new failed");
    evconnlistener_set_error_cb(listener, on_accept_error);
    event* term = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    event* intr = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    evsignal_add(term, nullptr);
    evsignal_add(intr, nullptr);
    iolab::announce_listening(lfd);
    event_base_dispatch(srv.base);
    while (!srv.clients.empty())
        close_client(*srv.clients.begin(), "server stopping");
    event_free(term);
    event_free(intr);
    evconnlistener_free(listener);
    event_base_free(srv.base);
    iolab::print_summary(srv.stats);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Server srv;
    CLI::App app{"Echo server on libevent bufferevents (a yardstick for lab 06's loop-echo)"};
    iolab::add_server_options(app, "peer-libevent", srv.opts, iolab::kConnectionLogHelp);
    iolab::add_out_limit_option(app, srv.out_limit);
    IOLAB_PARSE(app, argc, argv);
    srv.log = iolab::Log(srv.opts.verbose);
    return iolab::guarded_main("peer-libevent", [&] {
        iolab::raise_nofile_limit();
        iolab::ignore_sigpipe();
        return serve(srv);
    });
}
