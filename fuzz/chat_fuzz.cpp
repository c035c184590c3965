// libFuzzer target for servers/chat/chat_core: the Hub fed arbitrary bytes as
// one to four clients, through its public API only.
//
// The input is a script of steps. Each step's first byte picks the client
// (low 2 bits) and what happens: bytes from that client (the next byte is
// the length, then that many bytes; the I/O layer does not read a client
// whose input is held by flood control, so neither do we), the clock moving
// on (held input whose time has come is resumed, as the server's timer
// does), the client's output being flushed, the client going away, or a new
// connection. After every step: a client the Hub closed is reported
// disconnected, as the I/O layer does; output never passes max_queue plus
// one reply; held input never passes max_input plus one read; the open
// count never passes max_clients. At the end the Hub shuts down cleanly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "servers/chat/chat_core.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

class FakeConn : public iolab::chat::Connection {
  public:
    void send(std::string_view bytes) override { out_.append(bytes); }
    [[nodiscard]] std::size_t queued() const override { return out_.size(); }
    void close() override { closed_ = true; }
    void flush() { out_.clear(); }
    bool closed_ = false;

  private:
    std::string out_;
};

struct Client {
    std::unique_ptr<FakeConn> conn;
    iolab::chat::Session* session = nullptr;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    iolab::chat::Limits limits;
    limits.max_line = 64;
    limits.max_queue = 2048;
    limits.rate_limit = 5;
    limits.max_clients = 3;
    limits.notices_max = 2;
    limits.max_input = 1024;
    iolab::chat::Hub hub(limits);
    auto now = iolab::chat::Clock::time_point{} + std::chrono::hours(1);
    Client clients[4];
    auto connect = [&](Client& c) {
        c.conn = std::make_unique<FakeConn>();
        c.session = hub.connect(*c.conn, "peer", now);
        if (c.session == nullptr) c.conn.reset();  // refused: closed, never called again
    };
    std::size_t at = 0;
    while (at < size) {
        const uint8_t op = data[at++];
        Client& c = clients[op & 3];
        switch ((op >> 2) % 6) {
            case 0:
            case 1: {  // bytes from the client
                if (at >= size) break;
                std::size_t n = data[at++] % 96;
                n = std::min(n, size - at);
                if (c.session && !c.conn->closed_ && !c.session->held()) {
                    hub.receive(*c.session, {reinterpret_cast<const char*>(data + at), n}, now);
                }
                at += n;
                break;
            }
            case 2:  // time passes; held input whose tokens are back goes on
                now += std::chrono::milliseconds(op * 10);
                for (Client& k : clients) {
                    if (k.session && !k.conn->closed_ && k.session->held() &&
                        hub.resume_at(*k.session) <= now) {
                        hub.resume(*k.session, now);
                    }
                }
                break;
            case 3:  // the client's output reaches the socket
                if (c.conn) c.conn->flush();
                break;
            case 4:  // the peer goes away
                if (c.session) {
                    hub.disconnected(*c.session, "peer closed");
                    c.session = nullptr;
                    c.conn.reset();
                }
                break;
            case 5:  // a new connection in this slot
                if (!c.session) connect(c);
                break;
        }
        for (Client& k : clients) {
            if (k.session && k.conn->closed_) {
                hub.disconnected(*k.session, "closed");
                k.session = nullptr;
                k.conn.reset();
            }
            // Output: one reply past the max_queue check at most. Held input:
            // one read (< 96 bytes) and one unfinished line past max_input.
            if (k.conn) check(k.conn->queued() <= limits.max_queue + 8192);
            if (k.session) check(k.session->backlog() <= limits.max_input + 96 + limits.max_line);
        }
        check(hub.open_sessions() <= limits.max_clients);
    }
    hub.shutdown("fuzz over");
    for (Client& k : clients) {
        if (k.session) {
            check(k.conn->closed_);
            hub.disconnected(*k.session, "closed");
        }
    }
    check(hub.sessions() == 0);
    return 0;
}
