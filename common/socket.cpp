#include "common/socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/error.hpp"

namespace iolab {

void set_int_option(int fd, int level, int name, int value, std::string_view what) {
    if (setsockopt(fd, level, name, &value, sizeof value) != 0) throw_sys("setsockopt", what);
}

void set_nonblocking(int fd, bool on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) throw_sys("fcntl(F_GETFL)", "fd " + std::to_string(fd));
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (fcntl(fd, F_SETFL, flags) != 0) throw_sys("fcntl(F_SETFL)", "fd " + std::to_string(fd));
}

void set_nodelay(int fd, bool on) {
    set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, "TCP_NODELAY");
}

Fd listen_tcp(const SockAddr& addr, const ListenOptions& opts) {
    const std::string where = addr.to_string();
    int type = SOCK_STREAM | SOCK_CLOEXEC | (opts.nonblocking ? SOCK_NONBLOCK : 0);
    Fd fd(::socket(addr.family(), type, IPPROTO_TCP));
    if (!fd) throw_sys("socket", where);
    // SO_REUSEADDR lets a restarted server bind while old connections of the
    // previous run still sit in TIME_WAIT.
    set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR " + where);
    if (opts.reuse_port)
        set_int_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT " + where);
    if (addr.family() == AF_INET6) set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, where);
    if (::bind(fd.get(), addr.get(), addr.len) != 0) throw_sys("bind", where);
    if (::listen(fd.get(), opts.backlog) != 0) throw_sys("listen", where);
    return fd;
}

Fd listen_tcp(std::string_view host, uint16_t port, const ListenOptions& opts) {
    auto addrs = resolve(host, port, /*passive=*/true);
    for (std::size_t i = 0; i + 1 < addrs.size(); ++i) {
        try {
            return listen_tcp(addrs[i], opts);
        } catch (const SysError&) {
            // try the next address; the last one reports its error
        }
    }
    return listen_tcp(addrs.back(), opts);
}

Fd connect_tcp(const SockAddr& addr, std::chrono::milliseconds timeout, bool nonblocking) {
    const std::string where = addr.to_string();
    Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
    if (!fd) throw_sys("socket", where);
    if (::connect(fd.get(), addr.get(), addr.len) != 0) {
        // A non-blocking connect returns EINPROGRESS at once; the handshake goes
        // on in the kernel and the socket turns writable when it has finished,
        // successfully or not. SO_ERROR then tells which.
        if (errno != EINPROGRESS && errno != EINTR) throw_sys("connect", where);
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) throw_sys("connect", where, ETIMEDOUT);
            pollfd p{fd.get(), POLLOUT, 0};
            int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_sys("poll", "connect " + where);
            if (n == 0) throw_sys("connect", where, ETIMEDOUT);
            break;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            throw_sys("getsockopt(SO_ERROR)", where);
        if (err != 0) throw_sys("connect", where, err);
    }
    if (!nonblocking) set_nonblocking(fd.get(), false);
    return fd;
}

Fd connect_tcp(std::string_view host, uint16_t port, std::chrono::milliseconds timeout,
               bool nonblocking) {
    auto addrs = resolve(host, port);
    for (std::size_t i = 0; i + 1 < addrs.size(); ++i) {
        try {
            return connect_tcp(addrs[i], timeout, nonblocking);
        } catch (const SysError&) {
        }
    }
    return connect_tcp(addrs.back(), timeout, nonblocking);
}

Accepted accept_client(int listen_fd, int flags) {
    Accepted a;
    for (;;) {
        a.peer.len = sizeof a.peer.storage;
        int fd = ::accept4(listen_fd, a.peer.get(), &a.peer.len, flags | SOCK_CLOEXEC);
        if (fd >= 0) {
            a.fd.reset(fd);
            a.err = 0;
            return a;
        }
        // ECONNABORTED: the client gave up while its connection waited in the
        // backlog. Nothing to report; take the next one.
        if (errno == EINTR || errno == ECONNABORTED) continue;
        a.err = errno;
        return a;
    }
}

bool is_resource_exhaustion(int err) noexcept {
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

}  // namespace iolab
