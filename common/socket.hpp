// Creating TCP sockets: listen, connect with a timeout, accept with the peer
// address, and the socket options the labs toggle.
#pragma once

#include <chrono>
#include <string_view>

#include "common/address.hpp"
#include "common/fd.hpp"

namespace iolab {

struct ListenOptions {
    int backlog = 4096;        // the kernel caps it at net.core.somaxconn
    bool reuse_port = false;   // SO_REUSEPORT: several listeners share the port
    bool nonblocking = false;  // O_NONBLOCK on the listening socket
};

// socket + SO_REUSEADDR + bind + listen, CLOEXEC. Throws SysError naming the
// address: "bind 127.0.0.1:80: Permission denied".
Fd listen_tcp(const SockAddr& addr, const ListenOptions& opts = {});
// Resolves `host` (passive) and listens on the first address that works.
Fd listen_tcp(std::string_view host, uint16_t port, const ListenOptions& opts = {});

// A non-blocking connect that waits at most `timeout` (EINPROGRESS, poll for
// writability, then SO_ERROR). The returned socket is blocking again unless
// `nonblocking` is set. Throws SysError("connect", "127.0.0.1:9007", errno);
// a timeout is reported as ETIMEDOUT.
Fd connect_tcp(const SockAddr& addr, std::chrono::milliseconds timeout, bool nonblocking = false);
// Resolves `host` and tries each address in turn; the last error is thrown.
Fd connect_tcp(std::string_view host, uint16_t port, std::chrono::milliseconds timeout,
               bool nonblocking = false);

// The outcome of accept: a descriptor and the peer, or the errno (non-throwing:
// a server decides what an accept failure means for it).
struct Accepted {
    Fd fd;
    SockAddr peer;
    int err = 0;  // 0 on success
    explicit operator bool() const noexcept { return fd.valid(); }
};

// accept4(listen_fd, ..., flags) retried on EINTR and ECONNABORTED. `flags` is
// a mask of SOCK_CLOEXEC / SOCK_NONBLOCK (SOCK_CLOEXEC is always added).
Accepted accept_client(int listen_fd, int flags = 0);

// True for accept errors that mean "out of descriptors" (EMFILE, ENFILE) or
// memory (ENOBUFS, ENOMEM): the pending connection stays in the backlog.
bool is_resource_exhaustion(int err) noexcept;

void set_nonblocking(int fd, bool on = true);  // throws SysError
void set_nodelay(int fd, bool on = true);      // TCP_NODELAY, throws SysError
void set_int_option(int fd, int level, int name, int value, std::string_view what);

}  // namespace iolab
