// peer-asio — the suite's echo server written the way a standalone Asio
// program is: an acceptor whose handler accepts the next connection, a
// session per client kept alive by the shared_ptr its pending handlers hold,
// async_read_some then async_write of what came in, then the next read; an
// asio::signal_set ends io_context::run. A yardstick for lab 06's loop-echo
// (scripts/bench-event-loop.sh), not a lab program.
//
// Usage: peer-asio [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//
// The read-then-write chain is its own backpressure: a session does not read
// again until its echo is written, so a client's buffer is bounded by the
// 64 KiB read buffer (no --out-limit needed).
#include <asio.hpp>

#include <CLI/CLI.hpp>
#include <array>
#include <csignal>
#include <memory>
#include <string>
#include <unordered_set>

#include "common/address.hpp"
#include "common/io.hpp"
#include "common/log.hpp"
#include "common/server.hpp"
#include "common/socket.hpp"

namespace {

using asio::ip::tcp;

struct Shared {
    iolab::ServerOptions opts;
    iolab::ServerStats stats;
    iolab::Log log{false};
    std::unordered_set<class Session*> sessions;
};

std::string name_of(const tcp::endpoint& e) {
    const auto a = e.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(e.port());
}

class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket s, Shared& shared, std::string peer)
        : socket_(std::move(s)), shared_(shared), peer_(std::move(peer)) {
        shared_.sessions.insert(this);
    }
    ~Session() {
        shared_.sessions.erase(this);
        shared_.log.info("disconnect " + peer_ + " (" + why_ + ")");
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start() { read(); }
    // The server stops: the pending operation completes with
    // operation_aborted and the session ends.
    void stop() {
        why_ = "server stopping";
        asio::error_code ignored;
        socket_.close(ignored);
    }

  private:
    void read() {
        socket_.async_read_some(asio::buffer(buf_),
                                [self = shared_from_this()](asio::error_code ec, std::size_t n) {
                                    self->on_read(ec, n);
                                });
    }
    void on_read(const asio::error_code& ec, std::size_t n) {
        if (ec) {
            if (ec != asio::error::eof && ec != asio::error::operation_aborted)
                why_ = "read " + peer_ + ": " + ec.message();
            return;  // the last shared_ptr goes: the socket closes
        }
        shared_.stats.add_in(n);
        asio::async_write(socket_, asio::buffer(buf_.data(), n),
                          [self = shared_from_this()](asio::error_code wec, std::size_t w) {
                              self->on_written(wec, w);
                          });
    }
    void on_written(const asio::error_code& ec, std::size_t n) {
        shared_.stats.add_out(n);
        if (ec) {
            if (ec != asio::error::operation_aborted) why_ = "write " + peer_ + ": " + ec.message();
            return;
        }
        read();
    }

    tcp::socket socket_;
    Shared& shared_;
    std::string peer_;
    std::string why_ = "done";
    std::array<char, 64 * 1024> buf_;
};

class Server {
  public:
    Server(asio::io_context& ctx, Shared& shared)
        : ctx_(ctx), shared_(shared), acceptor_(ctx), rest_(ctx), signals_(ctx, SIGINT, SIGTERM) {}

    int run() {
        // The suite's own listen (its errors name the call and the address),
        // then handed to Asio.
        iolab::Fd fd =
            iolab::listen_tcp(shared_.opts.host, shared_.opts.port, {.nonblocking = true});
        const int lfd = fd.get();
        where_ = iolab::local_address(lfd).to_string();
        const bool v6 = iolab::local_address(lfd).family() == AF_INET6;
        acceptor_.assign(v6 ? tcp::v6() : tcp::v4(), fd.release());
        signals_.async_wait([this](const asio::error_code&, int) { stop(); });
        accept();
        iolab::announce_listening(lfd);
        ctx_.run();
        iolab::print_summary(shared_.stats);
        return 0;
    }

  private:
    void accept() {
        acceptor_.async_accept([this](asio::error_code ec, tcp::socket s) {
            if (ec == asio::error::operation_aborted) return;
            if (ec) {
                // Out of descriptors the listener stays ready: accepting again
                // at once would spin and log without end. Rest 100 ms.
                shared_.log.error("accept " + where_ + ": " + ec.message());
                rest_.expires_after(std::chrono::milliseconds(100));
                rest_.async_wait([this](const asio::error_code& wec) {
                    if (!wec) accept();
                });
                return;
            } else {
                asio::error_code pe;
                const std::string peer = name_of(s.remote_endpoint(pe));
                if (shared_.sessions.size() >= shared_.opts.max_clients) {
                    ++shared_.stats.refused;
                    shared_.log.info("refused " + peer + ": --max-clients reached");
                } else {
                    ++shared_.stats.connections;
                    shared_.log.info("connect " + peer);
                    s.set_option(tcp::no_delay(true), pe);
                    std::make_shared<Session>(std::move(s), shared_, peer)->start();
                }
            }
            accept();
        });
    }
    void stop() {
        asio::error_code ignored;
        acceptor_.close(ignored);
        rest_.cancel();
        // Copy: a session leaves the set when its last handler ends.
        const std::vector<Session*> open(shared_.sessions.begin(), shared_.sessions.end());
        for (Session* s : open)
            s->stop();
        // run() returns once the aborted handlers have run and nothing is left.
    }

    asio::io_context& ctx_;
    Shared& shared_;
    tcp::acceptor acceptor_;
    asio::steady_timer rest_;
    asio::signal_set signals_;
    std::string where_;
};

}  // namespace

int main(int argc, char** argv) {
    Shared shared;
    CLI::App app{"Echo server on standalone Asio (a yardstick for lab 06's loop-echo)"};
    iolab::add_server_options(app, "peer-asio", shared.opts, iolab::kConnectionLogHelp);
    IOLAB_PARSE(app, argc, argv);
    shared.log = iolab::Log(shared.opts.verbose);
    return iolab::guarded_main("peer-asio", [&] {
        iolab::raise_nofile_limit();
        iolab::ignore_sigpipe();
        asio::io_context ctx(1);  // one thread: no locking inside Asio
        Server server(ctx, shared);
        return server.run();
    });
}
