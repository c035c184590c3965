// echo-aio — POSIX asynchronous I/O (aio_read / aio_write) on sockets.
//
// Usage: echo-aio [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]
//                 [--aio-threads N]
//
// The program hands the library a request — "read up to 64 KiB from this
// socket into this buffer" — in a struct aiocb, and goes on. When the request
// is done, the library queues a realtime signal (SIGEV_SIGNAL) whose si_value
// names the connection; the main loop takes those signals one by one with
// sigtimedwait(2), collects the result with aio_error/aio_return and submits
// the next request: write the bytes back, then read again. That is the
// completion model: the program learns that I/O *has happened*, not that it
// could happen now.
//
// But the kernel has no asynchronous read for sockets that glibc could use.
// glibc implements POSIX aio in user space with a pool of threads (at most
// --aio-threads, via aio_init): each request is run by a helper thread that
// makes the ordinary *blocking* call — pread64 (which fails with ESPIPE on a
// socket), then read — and sends the signal when it returns. A read on an idle
// client therefore occupies one helper thread for as long as the client stays
// quiet. With more idle clients than threads, the requests of every other
// client wait in glibc's queue behind them: see LAB.md, and `ps -L`, `strace -f`.
//
// POSIX aio has no accept. This program does what glibc does for read: one
// thread blocks in accept(2) and posts each new descriptor to the main loop as
// a realtime signal (sigqueue, si_value = the descriptor).
//
// Linux notes: the sockets stay blocking (a non-blocking one would make the
// helper's read fail with EAGAIN). A completion signal that cannot be queued
// (RLIMIT_SIGPENDING) is lost, so once a second without signals the loop polls
// every request with aio_error.

#include <aio.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/acceptor.hpp"
#include "common/address.hpp"
#include "common/error.hpp"
#include "common/server.hpp"
#include "common/signals.hpp"
#include "common/socket.hpp"

namespace {

using namespace iolab;

constexpr std::size_t kBufSize = 64 * 1024;  // one request's buffer per client

// One client. Its aiocb and buffer belong to a helper thread while a request
// is in flight, so a Client never moves (held by unique_ptr) and is destroyed
// only when no request of it is running.
struct Client {
    uint64_t id = 0;
    Fd fd;
    std::string peer;
    // (heap-held: on 64-bit glibc's aiocb holds a zero-length array, __pad[0],
    // which ISO C++ does not allow in a member)
    std::unique_ptr<aiocb> cb = std::make_unique<aiocb>();
    std::unique_ptr<char[]> buf = std::make_unique<char[]>(kBufSize);
    std::size_t off = 0, len = 0;  // while writing: buf[off, len) is still owed
    bool in_flight = false;
    std::string reason;  // why it is closed, for the disconnect line
    bool writing = false;
};

class AioServer {
  public:
    // `stop` has blocked SIGINT/SIGTERM in main() before any thread started.
    AioServer(StopSignals& stop, const ServerOptions& opts, int aio_threads)
        : stop_(stop), opts_(opts), aio_threads_(aio_threads), log_(opts.verbose) {}

    int run() {
        raise_nofile_limit();
        sig_done_ = SIGRTMIN;        // "a request of connection si_value finished"
        sig_accept_ = SIGRTMIN + 1;  // "descriptor si_value was accepted"
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig_done_);
        sigaddset(&set, sig_accept_);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        // Blocked before any thread starts: the acceptor inherits the mask,
        // and glibc's helper threads block every signal themselves. The
        // signals then wait, queued, until sigtimedwait takes them.
        if (int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0)
            throw_sys("pthread_sigmask", "SIGRTMIN", e);

        // aio_init must come before the first request: it sizes glibc's pool.
        aioinit init{};
        init.aio_threads = aio_threads_;  // at most this many helper threads
        init.aio_num = 64;                // requests expected at once (a hint)
        init.aio_idle_time = 1;           // seconds an idle helper lingers
        ::aio_init(&init);

        listener_ = listen_tcp(opts_.host, opts_.port);
        where_ = local_address(listener_.get()).to_string();
        announce_listening(listener_.get());
        std::thread acceptor([this] { accept_loop(); });

        for (;;) {
            timespec second{1, 0};
            siginfo_t si{};
            int sig = ::sigtimedwait(&set, &si, &second);
            if (sig < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN) throw_sys("sigtimedwait", where_);
                poll_all();  // a quiet second: catch a completion whose signal was lost
                continue;
            }
            if (sig == SIGINT || sig == SIGTERM) {
                // Taken here, not from the signalfd: record it as the stop.
                stop_.request();
                break;
            }
            if (sig == sig_accept_) {
                add_client(si.si_value.sival_int);
                continue;
            }
            // si_code is SI_ASYNCIO: glibc's helper queued it with the
            // sigev_value we put in the aiocb — here, the connection's id.
            auto id = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(si.si_value.sival_ptr));
            if (auto it = clients_.find(id); it != clients_.end()) complete(it);
        }

        // Stop: wake the acceptor (shutdown makes a blocked accept fail),
        // then every helper thread blocked in read/write on a client.
        stopping_.store(true);
        ::shutdown(listener_.get(), SHUT_RDWR);
        acceptor.join();
        // Accepted but still travelling in a signal: counted, never served.
        stats_.connections.fetch_add(drain_accepted(sig_accept_));
        for (auto& [id, c] : clients_) {
            ::shutdown(c->fd.get(), SHUT_RDWR);  // a blocked read returns 0
            ::aio_cancel(c->fd.get(), nullptr);  // requests still queued are dropped
        }
        wait_all();
        clients_.clear();
        print_summary(stats_);
        return 0;
    }

  private:
    // The acceptor thread: blocking accept, each new descriptor sent to the
    // main loop inside a queued realtime signal.
    void accept_loop() {
        auto last_log = std::chrono::steady_clock::time_point{};
        while (!stopping_.load()) {
            Accepted a = accept_client(listener_.get());
            if (!a) {
                if (stopping_.load()) return;
                auto now = std::chrono::steady_clock::now();
                if (now - last_log >= std::chrono::seconds(1)) {  // one line a second at most
                    log_.error(sys_message_fdless("accept", where_, a.err));
                    last_log = now;
                }
                // EMFILE/ENFILE/ENOBUFS: the connection stays in the backlog;
                // try again in 100 ms rather than spin on it.
                if (is_resource_exhaustion(a.err)) ::usleep(100 * 1000);
                continue;
            }
            sigval v{};
            v.sival_int = a.fd.get();
            if (::sigqueue(::getpid(), sig_accept_, v) != 0) {
                // EAGAIN: the realtime queue is full. Refuse this client.
                log_.error(sys_message("sigqueue", a.peer.to_string(), errno));
                stats_.refused.fetch_add(1);
                continue;
            }
            (void)a.fd.release();  // the main loop owns it now
        }
    }

    // After the acceptor has ended: descriptors still travelling in signals.
    static uint64_t drain_accepted(int sig) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        timespec zero{0, 0};
        siginfo_t si{};
        uint64_t n = 0;
        while (::sigtimedwait(&one, &si, &zero) > 0) {
            Fd closing(si.si_value.sival_int);  // never served: close it
            ++n;
        }
        return n;
    }

    void add_client(int raw_fd) {
        auto c = std::make_unique<Client>();
        c->fd.reset(raw_fd);
        c->id = ++last_id_;
        c->peer = accepted_peer(raw_fd, log_);
        if (!admit_or_refuse(c->peer, clients_.size(), opts_.max_clients, stats_, log_)) return;
        Client& ref = *c;
        auto it = clients_.emplace(ref.id, std::move(c)).first;
        if (!submit_read(ref)) close(it);
    }

    // Fills the aiocb for one request and hands it to glibc.
    void prepare(Client& c, char* data, std::size_t n) {
        *c.cb = aiocb{};
        c.cb->aio_fildes = c.fd.get();
        c.cb->aio_buf = data;
        c.cb->aio_nbytes = n;
        c.cb->aio_offset = 0;  // ignored on a socket (glibc falls back to read/write)
        c.cb->aio_sigevent.sigev_notify = SIGEV_SIGNAL;
        c.cb->aio_sigevent.sigev_signo = sig_done_;
        c.cb->aio_sigevent.sigev_value.sival_ptr =
            reinterpret_cast<void*>(static_cast<uintptr_t>(c.id));
    }

    bool submit_read(Client& c) {
        // [lab:submit]
        prepare(c, c.buf.get(), kBufSize);
        c.writing = false;
        // aio_read returns at once: the request is queued for a helper thread.
        if (::aio_read(c.cb.get()) != 0) {
            const int err = errno;
            log_.error(sys_message("aio_read", c.peer, err));
            c.reason = "aio_read: " + errno_text(err);
            return false;
        }
        c.in_flight = true;
        return true;
        // [/lab:submit]
    }

    bool submit_write(Client& c) {
        prepare(c, c.buf.get() + c.off, c.len - c.off);
        c.writing = true;
        if (::aio_write(c.cb.get()) != 0) {
            const int err = errno;
            log_.error(sys_message("aio_write", c.peer, err));
            c.reason = "aio_write: " + errno_text(err);
            return false;
        }
        c.in_flight = true;
        return true;
    }

    using Iter = std::unordered_map<uint64_t, std::unique_ptr<Client>>::iterator;

    void close(Iter it) {
        log_.info("disconnect " + it->second->peer + " (" + it->second->reason + ")");
        clients_.erase(it);  // close(2); no request of it is in flight
    }

    // The outcome of a finished request, counted in the stats.
    enum class Next { read, write, close };
    Next collect(Client& c) {
        // [lab:collect]
        int err = ::aio_error(c.cb.get());
        ssize_t n = ::aio_return(c.cb.get());  // frees glibc's record of the request
        c.in_flight = false;
        if (!c.writing) {
            if (err != 0) {
                c.reason = err == ECONNRESET ? "reset" : "aio_read: " + errno_text(err);
                return Next::close;
            }
            if (n == 0) {
                c.reason = "eof";  // the client sent FIN: all echoed already
                return Next::close;
            }
            stats_.add_in(static_cast<uint64_t>(n));
            c.off = 0;
            c.len = static_cast<std::size_t>(n);
            return Next::write;
        }
        // [/lab:collect]
        if (err != 0 || n <= 0) {
            err = err != 0 ? err : EIO;
            c.reason =
                err == ECONNRESET || err == EPIPE ? "reset" : "aio_write: " + errno_text(err);
            return Next::close;
        }
        stats_.add_out(static_cast<uint64_t>(n));
        c.off += static_cast<std::size_t>(n);
        return c.off < c.len ? Next::write : Next::read;
    }

    // A request may have finished: collect it and submit the next one.
    void complete(Iter it) {
        Client& c = *it->second;
        if (!c.in_flight) return;  // an old signal for a request already collected
        if (::aio_error(c.cb.get()) == EINPROGRESS) return;  // one for the previous request
        Next next = collect(c);
        bool ok = next == Next::write ? submit_write(c) : next == Next::read && submit_read(c);
        if (!ok) close(it);
    }

    void poll_all() {
        std::vector<uint64_t> ids;
        for (auto& [id, c] : clients_)
            if (c->in_flight) ids.push_back(id);
        for (uint64_t id : ids)
            if (auto it = clients_.find(id); it != clients_.end()) complete(it);
    }

    // At stop: every request must have finished before its buffer is freed.
    void wait_all() {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
            std::vector<const aiocb*> running;
            for (auto& [id, c] : clients_) {
                if (!c->in_flight) continue;
                if (::aio_error(c->cb.get()) == EINPROGRESS) {
                    running.push_back(c->cb.get());
                    continue;
                }
                // Finished, its signal maybe still queued behind SIGTERM
                // (sigtimedwait hands out the lowest signal number first):
                // count it, submit nothing more.
                (void)collect(*c);
            }
            if (running.empty()) return;
            if (std::chrono::steady_clock::now() > deadline) {
                log_.error("aio: " + std::to_string(running.size()) +
                           " request(s) still running at exit; their buffers are left alone");
                for (auto& [id, c] : clients_)
                    if (c->in_flight) (void)c.release();
                return;
            }
            // aio_suspend: sleep until one of these requests finishes (or 200 ms).
            timespec t{0, 200'000'000};
            ::aio_suspend(running.data(), static_cast<int>(running.size()), &t);
        }
    }

    StopSignals& stop_;  // its mask blocks SIGINT/SIGTERM; sigtimedwait takes them
    const ServerOptions& opts_;
    int aio_threads_;
    Log log_;
    int sig_done_ = 0;
    int sig_accept_ = 0;
    Fd listener_;
    std::string where_;
    ServerStats stats_;
    std::atomic<bool> stopping_{false};
    uint64_t last_id_ = 0;
    std::unordered_map<uint64_t, std::unique_ptr<Client>> clients_;
};

}  // namespace

int main(int argc, char** argv) {
    iolab::ServerOptions opts;
    int aio_threads = 20;  // glibc's own default
    CLI::App app{"POSIX aio echo server: aio_read/aio_write, completions as realtime signals"};
    iolab::add_server_options(app, "echo-aio", opts);
    app.add_option("--aio-threads", aio_threads, "Helper threads glibc may use (aio_init)")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);
    return iolab::guarded_main("echo-aio", [&] {
        iolab::StopSignals stop;  // blocks SIGINT/SIGTERM; first, before any thread
        AioServer server(stop, opts, aio_threads);
        return server.run();
    });
}
