// chat-server — a multi-user line chat on libevent (evconnlistener + bufferevents).
//
// Usage: chat-server [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                    [--max-line 4096] [--max-queue 262144] [--rate-limit 20]
//                    [--max-input 262144] [--idle-timeout 600] [--notices-max 500]
//                    [--linger 3] [--sndbuf 65536] [--trim-after 100]
// Try it: chat-server --port 9007, then `nc 127.0.0.1 9007` in two terminals.
//
// This file is only the I/O: every client is a Conn, a bufferevent whose
// output evbuffer is that client's write queue. What the lines mean — nicks,
// rooms, commands, flood control, the queue bound — is chat_core.{hpp,cpp},
// which sees a Conn only through the chat::Connection interface.
//
// One thread, one event loop. Nobody ever waits for anybody: a message to a
// room is appended to every member's output queue; when the round of
// callbacks is over, each client with new output gets one non-blocking write
// (flush_dirty). Only a socket that could not take it all has libevent watch
// for writability (EV_WRITE) until its backlog is gone. A member whose queue
// passes --max-queue is cut off (the core decides) instead of slowing the
// rest down.
//
// Flood control delays input instead of dropping it. A client past its rate
// (the core's token bucket) stops being read: bufferevent_disable(EV_READ)
// takes its socket out of epoll's interest, its next bytes wait in the
// kernel's receive queue, and when that is full TCP's window closes and its
// sender waits. A timer fires when the next token is due (Hub::resume_at);
// the held lines go out in order, and reading starts again once none is left.
// The kernel's share of a held client's input is FIONREAD on its socket; only
// when ours plus the kernel's passes --max-input is the client disconnected.
// SO_RCVBUF is set to --max-input so that the kernel can hold that much:
// left alone, a receive queue that is never read stops at about 128 KiB
// (net.ipv4.tcp_rmem), and a flood could never reach a larger bound.
//
// The idle timeout is a timer per client that looks at the time of the last
// complete line (Hub::idle_deadline) when it fires and sleeps again if there
// was one since: bytes without a newline do not keep a client alive.
//
// Memory after a crowd has left: every client costs some 5 KiB of small heap
// blocks (its session, bufferevent, evbuffers, map nodes). When they are
// freed, glibc's malloc keeps the free space in its heap for the next
// allocations; it returns memory to the kernel only from the top of the heap,
// and one block still in use above the free ones pins everything below it.
// So after a burst of at least --trim-after departures (once the loop has
// been quiet for 200 ms) the server logs malloc's own count (mallinfo2: bytes
// in use, bytes free but held) with -v and calls malloc_trim(0), which also
// gives back whole free pages from the middle of the heap (MADV_DONTNEED).
//
// Two queues stand between a message and a client: our output evbuffer
// (bounded by --max-queue) and the socket's send buffer in the kernel. Left
// alone, Linux grows a send buffer up to net.ipv4.tcp_wmem's maximum (4 MiB),
// so a stalled reader could pin megabytes of kernel memory before --max-queue
// ever noticed. --sndbuf fixes it per socket (SO_SNDBUF, which also turns off
// the autotuning): the most a slow reader can cost is then both bounds added.
//
// Ending a connection politely takes three steps, each bounded by --linger:
//   flushing  the core has said goodbye; wait until the queue is written
//   draining  shutdown(SHUT_WR) sends our FIN; read and discard until the
//             peer's FIN. Closing with unread input would send an RST, and an
//             RST can destroy the last lines still in the peer's receive buffer.
//   closed    bufferevent_free closes the socket.
// A peer that never reads is closed with SO_LINGER 0 (an RST) when its time is
// up: its unsent bytes are worthless and would otherwise sit in the kernel.
//
// Linux notes: SIGINT/SIGTERM arrive on a signalfd (StopSignals) watched by
// the loop like any socket. On stop, every client gets a notice and its queue
// is flushed (bounded by --linger), then the summary line is printed.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/address.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"
#include "servers/chat/chat_core.hpp"

namespace {

using namespace iolab;

// libevent objects owned like everything else: freed when the owner dies.
struct EventBaseFree {
    void operator()(event_base* b) const { event_base_free(b); }
};
struct EventFree {
    void operator()(event* e) const { event_free(e); }
};
struct ListenerFree {
    void operator()(evconnlistener* l) const { evconnlistener_free(l); }
};
using EventPtr = std::unique_ptr<event, EventFree>;

timeval seconds(unsigned s) {
    return timeval{static_cast<time_t>(s), 0};
}

// A timer's delay until `when`, rounded up to the next millisecond (a timer
// that fires early would find no token and have to be set again).
timeval until(chat::Clock::time_point when, chat::Clock::time_point now) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
    if (ms < 1) ms = 1;
    return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

class ChatServer;

class Conn final : public chat::Connection {
  public:
    enum class State { open, flushing, draining, closed };

    Conn(ChatServer& server, bufferevent* bev, std::string peer)
        : server_(server), bev_(bev), peer_(std::move(peer)) {}
    ~Conn() override { bufferevent_free(bev_); }  // closes the socket (BEV_OPT_CLOSE_ON_FREE)
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    void start(chat::Session* session);

    // chat::Connection
    void send(std::string_view bytes) override;
    [[nodiscard]] std::size_t queued() const override {
        return evbuffer_get_length(bufferevent_get_output(bev_));
    }
    void close() override;
    [[nodiscard]] std::size_t unread() const override;

    [[nodiscard]] State state() const noexcept { return state_; }
    void end_now() { finish("server stopping", false); }
    // Writes what send() queued since the last flush (see ChatServer::flush_dirty).
    void flush();
    [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
    [[nodiscard]] uint64_t written() const { return added_ - queued(); }

  private:
    static void on_read(bufferevent*, void* ctx) { static_cast<Conn*>(ctx)->readable(); }
    static void on_write(bufferevent*, void* ctx) { static_cast<Conn*>(ctx)->drained(); }
    static void on_event(bufferevent*, short what, void* ctx) {
        static_cast<Conn*>(ctx)->event(what);
    }
    static void on_step(evutil_socket_t, short, void* ctx) { static_cast<Conn*>(ctx)->drained(); }
    static void on_deadline(evutil_socket_t, short, void* ctx) {
        static_cast<Conn*>(ctx)->finish("closing took too long", true);
    }
    static void on_resume(evutil_socket_t, short, void* ctx) { static_cast<Conn*>(ctx)->resume(); }
    static void on_idle(evutil_socket_t, short, void* ctx) { static_cast<Conn*>(ctx)->idle(); }

    void readable();
    // After the core has had input: stop reading while it holds lines (and
    // wake up when the next token is due), read again once it holds none.
    void after_input();
    void resume();
    void idle();
    void arm_idle(chat::Clock::time_point now);
    void drained();
    void event(short what);
    void begin_drain();
    // The end: tells the core (if it still has a session), hands this Conn to
    // the server to be freed outside of any libevent callback for it.
    void finish(std::string_view why, bool abort);

    ChatServer& server_;
    bufferevent* bev_;
    std::string peer_;
    chat::Session* session_ = nullptr;  // owned by the Hub; null once ended
    State state_ = State::open;
    bool peer_eof_ = false;
    bool dirty_ = false;   // on the server's list of connections to flush
    bool reading_ = true;  // EV_READ enabled (false while flood control holds input)
    uint64_t added_ = 0;   // bytes ever queued, for bytes_out
    EventPtr deadline_;
    EventPtr step_;
    EventPtr resume_;  // flood control: the next held line's token is due
    EventPtr idle_;    // --idle-timeout
};

class ChatServer {
  public:
    ChatServer(const ServerOptions& opts, const chat::Limits& limits, unsigned linger, int sndbuf,
               unsigned trim_after, StopSignals& stop)
        : opts_(opts),
          limits_(limits),
          linger_(linger),
          sndbuf_(sndbuf),
          trim_after_(trim_after),
          stop_(stop),
          log_(opts.verbose),
          hub_(limits, [this](std::string_view l) { log_.info(l); }) {}

    int run() {
        raise_nofile_limit();
        Fd listen_fd = listen_tcp(opts_.host, opts_.port);
        set_nonblocking(listen_fd.get());
        where_ = local_address(listen_fd.get()).to_string();

        base_.reset(event_base_new());
        if (!base_) throw std::runtime_error("event_base_new failed");
        // Backlog 0: the socket is already listening. The listener accepts
        // with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC).
        listener_.reset(evconnlistener_new(base_.get(), &ChatServer::on_accept, this,
                                           LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd.get()));
        if (!listener_) throw std::runtime_error("evconnlistener_new failed");
        evconnlistener_set_error_cb(listener_.get(), &ChatServer::on_accept_error);

        stop_event_.reset(
            event_new(base_.get(), stop_.fd(), EV_READ | EV_PERSIST, &ChatServer::on_stop, this));
        event_add(stop_event_.get(), nullptr);
        reap_event_.reset(event_new(base_.get(), -1, 0, &ChatServer::on_reap, this));
        flush_event_.reset(event_new(base_.get(), -1, 0, &ChatServer::on_flush, this));
        resume_event_.reset(evtimer_new(base_.get(), &ChatServer::on_resume, this));
        trim_event_.reset(evtimer_new(base_.get(), &ChatServer::on_trim, this));

        announce_listening(listen_fd.get());
        event_base_dispatch(base_.get());

        // Whatever did not finish within the stop deadline is closed now.
        dirty_.clear();
        for (auto& [p, c] : conns_)
            stats_.add_out(c->written());
        conns_.clear();
        reap_now();
        listener_.reset();
        stats_.connections = hub_.stats().admitted;
        stats_.refused = hub_.stats().refused;
        print_summary(stats_);
        return 0;
    }

    // ---- used by Conn ----
    chat::Hub& hub() { return hub_; }
    ServerStats& stats() { return stats_; }
    const Log& log() const { return log_; }
    unsigned linger() const { return linger_; }
    bool stopping() const { return stopping_; }
    unsigned idle_timeout() const { return limits_.idle_timeout; }
    event_base* base() const { return base_.get(); }

    // `c` has new output: it is written once the current callbacks are done.
    void dirty(Conn* c) {
        dirty_.push_back(c);
        if (dirty_.size() == 1) event_active(flush_event_.get(), 0, 0);
    }

    // Frees `c` from the loop, not from inside one of its own callbacks.
    void reap(Conn* c) {
        auto it = conns_.find(c);
        if (it == conns_.end()) return;
        stats_.add_out(c->written());
        dead_.push_back(std::move(it->second));
        conns_.erase(it);
        event_active(reap_event_.get(), 0, 0);
        if (trim_after_ != 0 && !stopping_) {
            // Each departure pushes the check 200 ms further: it runs once
            // the burst is over.
            ++departed_;
            timeval quiet{0, 200 * 1000};
            evtimer_add(trim_event_.get(), &quiet);
        }
    }

  private:
    static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int len, void* ctx) {
        SockAddr peer;
        std::memcpy(&peer.storage, addr, static_cast<std::size_t>(len));
        peer.len = static_cast<socklen_t>(len);
        static_cast<ChatServer*>(ctx)->accepted(fd, peer.to_string());
    }

    void accepted(int fd, std::string peer) {
        // TCP_NODELAY: chat lines are small and should leave at once.
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (sndbuf_ > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf_, sizeof sndbuf_);
        // Room in the kernel for --max-input bytes of a held-back client (see
        // the header; the kernel doubles the value for its bookkeeping and
        // caps it at net.core.rmem_max).
        if (limits_.rate_limit != 0) {
            int rcvbuf = static_cast<int>(std::min<std::size_t>(limits_.max_input, 1 << 30));
            ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        }
        bufferevent* bev = bufferevent_socket_new(base_.get(), fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
            log_.error("bufferevent_socket_new " + peer + ": out of memory");
            Fd closer(fd);
            return;
        }
        auto conn = std::make_unique<Conn>(*this, bev, peer);
        Conn* c = conn.get();
        conns_.emplace(c, std::move(conn));
        chat::Session* s = hub_.connect(*c, peer, chat::Clock::now());
        c->start(s);
    }

    static void on_accept_error(evconnlistener* l, void* ctx) {
        int err = EVUTIL_SOCKET_ERROR();
        auto* self = static_cast<ChatServer*>(ctx);
        self->log_.error(sys_message("accept", self->where_, err));
        if (is_resource_exhaustion(err)) {
            // Out of descriptors: the connection stays in the backlog and the
            // listener would spin on it. Pause accepting for 100 ms.
            evconnlistener_disable(l);
            timeval tv{0, 100 * 1000};
            evtimer_add(self->resume_event_.get(), &tv);
        }
    }

    static void on_resume(evutil_socket_t, short, void* ctx) {
        auto* self = static_cast<ChatServer*>(ctx);
        if (self->listener_) evconnlistener_enable(self->listener_.get());
    }

    static void on_stop(evutil_socket_t, short, void* ctx) {
        auto* self = static_cast<ChatServer*>(ctx);
        if (self->stop_.check()) self->begin_stop();
    }

    void begin_stop() {
        if (stopping_) return;
        stopping_ = true;
        log_.info("stop: closing " + std::to_string(conns_.size()) + " connections");
        listener_.reset();  // no new clients
        event_del(stop_event_.get());
        hub_.shutdown("server shutting down");
        // Those already waiting for a peer's FIN wait no longer.
        std::vector<Conn*> draining;
        for (auto& [p, c] : conns_)
            if (c->state() == Conn::State::draining) draining.push_back(p);
        for (Conn* c : draining)
            c->end_now();
        // Every connection is now flushing. The loop ends when the last one is
        // freed, or after the deadline, whichever comes first.
        deadline_event_.reset(evtimer_new(base_.get(), &ChatServer::on_deadline, this));
        timeval tv = seconds(linger_ + 1);
        evtimer_add(deadline_event_.get(), &tv);
        maybe_done();
    }

    static void on_deadline(evutil_socket_t, short, void* ctx) {
        event_base_loopbreak(static_cast<ChatServer*>(ctx)->base_.get());
    }

    static void on_reap(evutil_socket_t, short, void* ctx) {
        auto* self = static_cast<ChatServer*>(ctx);
        self->reap_now();
        self->maybe_done();
    }

    static void on_flush(evutil_socket_t, short, void* ctx) {
        static_cast<ChatServer*>(ctx)->flush_dirty();
    }

    // One write per connection for everything the last round of callbacks
    // queued for it: a message fanned out to N clients costs N writes, and
    // two messages that arrived together still cost N, not 2N.
    void flush_dirty() {
        while (!dirty_.empty()) {
            std::vector<Conn*> now;
            now.swap(dirty_);
            for (Conn* c : now)
                c->flush();  // may mark others dirty (leave notices)
        }
    }

    static void on_trim(evutil_socket_t, short, void* ctx) {
        static_cast<ChatServer*>(ctx)->trim_memory();
    }

    // See the header: what malloc holds after a burst of departures, and
    // malloc_trim(0) to give the free part back.
    void trim_memory() {
        // A burst that came in two parts (a pause of 200 ms in the middle)
        // is one burst to the trim: departed_ counts since the last trim.
        // The log line comes after every part, so that the last part of a
        // crowd's departure is always seen.
        const struct mallinfo2 before = ::mallinfo2();
        const long rss_before = resident_kib();
        std::string line = "memory after " + std::to_string(departed_) + " departures (" +
                           std::to_string(conns_.size()) + " connections left): malloc in use " +
                           std::to_string(before.uordblks / 1024) + " KiB, free but held " +
                           std::to_string(before.fordblks / 1024) + " KiB; ";
        if (departed_ >= trim_after_) {
            departed_ = 0;
            ::malloc_trim(0);
            line += "malloc_trim(0): RSS " + std::to_string(rss_before) + " -> " +
                    std::to_string(resident_kib()) + " KiB";
        } else {
            line += "RSS " + std::to_string(rss_before) + " KiB, no trim yet (fewer than " +
                    std::to_string(trim_after_) + " departures)";
        }
        log_.info(line);
    }

    // VmRSS from /proc/self/statm (pages), in KiB; -1 if unreadable.
    static long resident_kib() {
        std::FILE* f = std::fopen("/proc/self/statm", "r");
        if (!f) return -1;
        long size = 0, resident = -1;
        if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
        std::fclose(f);
        return resident < 0 ? -1 : resident * (::sysconf(_SC_PAGESIZE) / 1024);
    }

    void reap_now() {
        flush_dirty();  // nothing on the dirty list may outlive its Conn
        dead_.clear();
    }

    void maybe_done() {
        if (stopping_ && conns_.empty()) event_base_loopbreak(base_.get());
    }

    const ServerOptions& opts_;
    chat::Limits limits_;
    unsigned linger_;
    int sndbuf_;           // SO_SNDBUF for client sockets; 0 = the kernel's autotuning
    unsigned trim_after_;  // departures in a burst before malloc_trim; 0 = never
    uint64_t departed_ = 0;
    StopSignals& stop_;
    Log log_;
    ServerStats stats_;
    std::string where_;
    std::unique_ptr<event_base, EventBaseFree> base_;
    std::unique_ptr<evconnlistener, ListenerFree> listener_;
    EventPtr stop_event_, reap_event_, flush_event_, resume_event_, deadline_event_, trim_event_;
    chat::Hub hub_;  // after base_: destroyed before it, sessions before their connections
    std::unordered_map<Conn*, std::unique_ptr<Conn>> conns_;
    std::vector<std::unique_ptr<Conn>> dead_;
    std::vector<Conn*> dirty_;
    bool stopping_ = false;
};

void Conn::start(chat::Session* session) {
    session_ = session;
    bufferevent_setcb(bev_, &Conn::on_read, &Conn::on_write, &Conn::on_event, this);
    if (session_ && server_.idle_timeout()) {
        idle_.reset(evtimer_new(server_.base(), &Conn::on_idle, this));
        arm_idle(chat::Clock::now());
    }
    // Writing starts out in direct mode: flush() writes the output queue
    // itself, and EV_WRITE is enabled only while a backlog waits for the
    // socket to take it. Leaving EV_WRITE on would cost two epoll_ctl calls
    // (add, then delete once empty) around every single write.
    // (A new bufferevent has EV_WRITE enabled: turn it off.)
    bufferevent_disable(bev_, EV_WRITE);
    bufferevent_enable(bev_, EV_READ);
}

void Conn::send(std::string_view bytes) {
    if (state_ == State::closed || state_ == State::draining) return;
    evbuffer_add(bufferevent_get_output(bev_), bytes.data(), bytes.size());
    added_ += bytes.size();
    if (!dirty_) {
        dirty_ = true;
        server_.dirty(this);
    }
}

void Conn::flush() {
    // [lab:flush]
    dirty_ = false;
    if (state_ != State::open && state_ != State::flushing) return;
    if (bufferevent_get_enabled(bev_) & EV_WRITE) return;  // libevent has a backlog going
    evbuffer* out = bufferevent_get_output(bev_);
    if (evbuffer_get_length(out) > 0) {
        // A socket bufferevent freezes the front of its output buffer so that
        // only its own write callback drains it; we stand in for that callback
        // here, and lift the freeze for exactly the duration of the write.
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, bufferevent_getfd(bev_));
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) > 0) {
        // The socket buffer is full (or the write failed): let libevent wait
        // for writability, retry, and report an error through on_event.
        bufferevent_enable(bev_, EV_WRITE);
    } else if (state_ == State::flushing) {
        begin_drain();
    }
    // [/lab:flush]
}

void Conn::readable() {
    evbuffer* in = bufferevent_get_input(bev_);
    std::array<char, 16 * 1024> buf;
    while (evbuffer_get_length(in) > 0) {
        int n = evbuffer_remove(in, buf.data(), buf.size());
        if (n <= 0) break;
        server_.stats().add_in(static_cast<uint64_t>(n));
        // Once the session has ended, input is read only to be thrown away.
        if (state_ == State::open && session_)
            server_.hub().receive(*session_, std::string_view(buf.data(), std::size_t(n)),
                                  chat::Clock::now());
    }
    after_input();
}

void Conn::after_input() {
    if (state_ != State::open || !session_) return;
    if (session_->held()) {
        if (reading_) {
            reading_ = false;
            bufferevent_disable(bev_, EV_READ);  // epoll stops watching; the kernel queues
        }
        if (!resume_) resume_.reset(evtimer_new(server_.base(), &Conn::on_resume, this));
        const auto now = chat::Clock::now();
        timeval tv = until(server_.hub().resume_at(*session_), now);
        evtimer_add(resume_.get(), &tv);
    } else if (!reading_) {
        reading_ = true;
        bufferevent_enable(bev_, EV_READ);
    }
}

void Conn::resume() {
    if (state_ != State::open || !session_) return;
    server_.hub().resume(*session_, chat::Clock::now());
    after_input();
}

std::size_t Conn::unread() const {
    int n = 0;
    if (::ioctl(bufferevent_getfd(bev_), FIONREAD, &n) != 0 || n < 0) return 0;
    return static_cast<std::size_t>(n);
}

void Conn::arm_idle(chat::Clock::time_point now) {
    timeval tv = until(server_.hub().idle_deadline(*session_), now);
    evtimer_add(idle_.get(), &tv);
}

void Conn::idle() {
    if (state_ != State::open || !session_) return;
    const auto now = chat::Clock::now();
    // One timer per client, never reset per line: when it fires, it checks
    // whether a complete line came since and, if so, sleeps until the new
    // deadline. A busy client costs no timer work per line.
    if (now < server_.hub().idle_deadline(*session_)) return arm_idle(now);
    server_.hub().idle(*session_);  // says why, then calls close()
}

void Conn::close() {
    if (state_ != State::open) return;
    state_ = State::flushing;
    if (resume_) evtimer_del(resume_.get());
    if (idle_) evtimer_del(idle_.get());
    // No idle timeout any more; a write that makes no progress for --linger
    // seconds ends the wait, and so does a deadline on the whole goodbye.
    timeval lt = seconds(server_.linger());
    bufferevent_set_timeouts(bev_, nullptr, &lt);
    deadline_.reset(evtimer_new(server_.base(), &Conn::on_deadline, this));
    timeval dl = seconds(2 * server_.linger());
    evtimer_add(deadline_.get(), &dl);
    // The next step runs from the loop, never inside the Hub's call to close().
    if (queued() == 0) {
        step_.reset(event_new(server_.base(), -1, 0, &Conn::on_step, this));
        event_active(step_.get(), 0, 0);
    }
    // else: on_write fires when the queue is empty
}

void Conn::drained() {
    // The backlog is written: back to direct mode.
    if (state_ == State::open || state_ == State::flushing) bufferevent_disable(bev_, EV_WRITE);
    if (state_ == State::flushing) begin_drain();
}

void Conn::begin_drain() {
    if (peer_eof_) return finish("closed", false);  // both directions done
    state_ = State::draining;
    int fd = bufferevent_getfd(bev_);
    ::shutdown(fd, SHUT_WR);  // our FIN, after the last byte
    if (server_.stopping()) {
        // The server is going down: no waiting for the peer's FIN. Reading
        // what has arrived keeps close() from answering with an RST.
        std::array<char, 16 * 1024> buf;
        for (int i = 0; i < 64; ++i)
            if (::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT) <= 0) break;
        return finish("server stopping", false);
    }
    timeval lt = seconds(server_.linger());
    bufferevent_set_timeouts(bev_, &lt, nullptr);
    bufferevent_enable(bev_, EV_READ);
}

void Conn::event(short what) {
    if (what & BEV_EVENT_EOF) {
        peer_eof_ = true;
        if (state_ == State::open) {
            // The peer has finished sending (it may still read: a half-close).
            // Its session ends now; what is queued for it is still delivered.
            if (session_) server_.hub().disconnected(*session_, "connection closed");
            session_ = nullptr;
            close();
        } else if (state_ == State::draining) {
            finish("closed", false);
        }
        // flushing: keep writing; begin_drain() sees peer_eof_
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        return finish(errno_text(err), false);
    }
    if (what & BEV_EVENT_TIMEOUT) {
        // A goodbye the peer does not take within --linger.
        return finish("closing timed out", (what & BEV_EVENT_WRITING) != 0);
    }
}

void Conn::finish(std::string_view why, bool abort) {
    if (state_ == State::closed) return;
    state_ = State::closed;
    bufferevent_disable(bev_, EV_READ | EV_WRITE);
    bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
    if (deadline_) evtimer_del(deadline_.get());
    if (step_) event_del(step_.get());
    if (resume_) evtimer_del(resume_.get());
    if (idle_) evtimer_del(idle_.get());
    if (abort) {
        // SO_LINGER 0: close() sends an RST and drops what the peer never read.
        linger lg{1, 0};
        ::setsockopt(bufferevent_getfd(bev_), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (session_) {
        chat::Session* s = session_;
        session_ = nullptr;
        server_.hub().disconnected(*s, why);
    }
    server_.log().info("close " + peer_ + (abort ? " (reset): " : ": ") + std::string(why));
    server_.reap(this);
}

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    iolab::chat::Limits limits;
    unsigned linger = 3;
    int sndbuf = 64 * 1024;
    unsigned trim_after = 100;
    CLI::App app{"Multi-user line chat on libevent: rooms, nicks, private messages"};
    iolab::add_server_options(app, "chat-server", opts);
    app.add_option("--max-line", limits.max_line, "Longest input line in bytes")
        ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 20))
        ->capture_default_str();
    app.add_option("--max-queue", limits.max_queue,
                   "Output bytes queued for one client before it is cut off as too slow")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--rate-limit", limits.rate_limit,
                   "Lines per second per client, a real number (0.5 = one line every 2 s; "
                   "flood control: faster lines are delayed, not dropped); 0 turns it off")
        ->check(CLI::Range(0.0, 1000000.0))
        ->capture_default_str();
    app.add_option("--max-input", limits.max_input,
                   "Bytes of input (ours plus the kernel's) a client held back by flood control "
                   "may have waiting before it is disconnected")
        ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--idle-timeout", limits.idle_timeout,
                   "Seconds without a complete line before a client is disconnected; 0 = never")
        ->check(CLI::Range(0u, 864000u))
        ->capture_default_str();
    app.add_option("--notices-max", limits.notices_max,
                   "Join/leave notices only in rooms of at most N users; 0 = always")
        ->capture_default_str();
    app.add_option("--linger", linger,
                   "Seconds a closing connection may take to flush its queue and finish")
        ->check(CLI::Range(1u, 600u))
        ->capture_default_str();
    app.add_option("--sndbuf", sndbuf,
                   "SO_SNDBUF of client sockets in bytes (the kernel doubles it); 0 = autotuned")
        ->check(CLI::Range(0, 64 << 20))
        ->capture_default_str();
    app.add_option("--trim-after", trim_after,
                   "After a burst of at least N departures, log malloc's statistics (-v) and "
                   "give free heap memory back with malloc_trim(0); 0 = never")
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    limits.max_clients = opts.max_clients;
    return iolab::guarded_main("chat-server", [&] {
        iolab::StopSignals stop;  // first: blocks SIGINT/SIGTERM before anything else
        iolab::ignore_sigpipe();
        ChatServer server(opts, limits, linger, sndbuf, trim_after, stop);
        return server.run();
    });
}
