// Socket addresses: parsing "host:port" / "[v6]:port", name resolution with
// getaddrinfo (IPv4 and IPv6), and printing them back.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace iolab {

// An IPv4 or IPv6 socket address, stored by value.
struct SockAddr {
    sockaddr_storage storage{};
    socklen_t len = 0;

    [[nodiscard]] const sockaddr* get() const noexcept {
        return reinterpret_cast<const sockaddr*>(&storage);
    }
    [[nodiscard]] sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
    [[nodiscard]] int family() const noexcept { return storage.ss_family; }
    [[nodiscard]] uint16_t port() const noexcept;
    void set_port(uint16_t port) noexcept;
    // The numeric host only: "127.0.0.1", "::1".
    [[nodiscard]] std::string host() const;
    // "127.0.0.1:9007" or "[::1]:9007".
    [[nodiscard]] std::string to_string() const;

    // A numeric address literal ("127.0.0.1", "::1", "[::1]") and a port;
    // throws std::invalid_argument if `host` is not a numeric literal.
    static SockAddr from_numeric(std::string_view host, uint16_t port);
};

// A host and port as the user wrote them, before resolution.
struct HostPort {
    std::string host;  // without brackets
    uint16_t port = 0;
    [[nodiscard]] std::string to_string() const;  // brackets back around IPv6
};

// Thrown for text that is not an address, and for names that do not resolve.
class AddressError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

// Parses "host:port", "[v6addr]:port" or "v6addr" forms. A bare IPv6 literal
// needs brackets when a port follows. Throws AddressError naming the problem.
HostPort parse_host_port(std::string_view text);

// Parses a port number 0..65535; throws AddressError otherwise.
uint16_t parse_port(std::string_view text);

// getaddrinfo for TCP. `passive` asks for addresses to bind. Throws
// AddressError("resolve NAME: <gai_strerror>") when nothing is found.
std::vector<SockAddr> resolve(std::string_view host, uint16_t port, bool passive = false);

// The local / remote address of a socket; throws SysError.
SockAddr local_address(int fd);
SockAddr peer_address(int fd);

// The peer of an accepted socket for log lines: "127.0.0.1:41234", or "fd N"
// when getpeername fails (a connection reset before anyone looked: ENOTCONN;
// still a connection that was accepted, whose first read reports the reset).
// `err` gets getpeername's errno, 0 when it worked.
std::string peer_label(int fd, int& err);

}  // namespace iolab
