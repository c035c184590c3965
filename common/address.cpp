#include "common/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

#include "common/error.hpp"

namespace iolab {

uint16_t SockAddr::port() const noexcept {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    return 0;
}

void SockAddr::set_port(uint16_t port) noexcept {
    if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
    if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

std::string SockAddr::host() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf,
                  sizeof buf);
    } else if (family() == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf,
                  sizeof buf);
    } else {
        return "?";
    }
    return buf;
}

std::string SockAddr::to_string() const {
    if (family() == AF_INET6) return "[" + host() + "]:" + std::to_string(port());
    return host() + ":" + std::to_string(port());
}

SockAddr SockAddr::from_numeric(std::string_view host, uint16_t port) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    std::string h(host);
    SockAddr a;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        a.len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        a.len = sizeof(sockaddr_in6);
    } else {
        throw AddressError("not a numeric IP address: '" + h + "'");
    }
    a.set_port(port);
    return a;
}

std::string HostPort::to_string() const {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

uint16_t parse_port(std::string_view text) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > 65535)
        throw AddressError("invalid port '" + std::string(text) + "' (expected 0 to 65535)");
    return static_cast<uint16_t>(value);
}

HostPort parse_host_port(std::string_view text) {
    const std::string quoted = "'" + std::string(text) + "'";
    if (text.empty()) throw AddressError("empty address (expected HOST:PORT)");
    HostPort hp;
    if (text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos)
            throw AddressError("missing ']' in " + quoted + " (expected [IPv6]:PORT)");
        hp.host = std::string(text.substr(1, close - 1));
        auto rest = text.substr(close + 1);
        if (rest.empty() || rest.front() != ':')
            throw AddressError("missing port in " + quoted + " (expected [IPv6]:PORT)");
        hp.port = parse_port(rest.substr(1));
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            throw AddressError("missing port in " + quoted + " (expected HOST:PORT)");
        if (text.find(':') != colon)
            throw AddressError("IPv6 address needs brackets in " + quoted +
                               " (expected [IPv6]:PORT)");
        hp.host = std::string(text.substr(0, colon));
        hp.port = parse_port(text.substr(colon + 1));
    }
    if (hp.host.empty()) throw AddressError("missing host in " + quoted);
    return hp;
}

std::vector<SockAddr> resolve(std::string_view host, uint16_t port, bool passive) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    std::string h(host);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    addrinfo* list = nullptr;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(h.empty() ? nullptr : h.c_str(), service.c_str(), &hints, &list);
    if (rc != 0) {
        std::string why = rc == EAI_SYSTEM ? errno_text(errno) : gai_strerror(rc);
        throw AddressError("resolve " + h + ": " + why);
    }
    std::vector<SockAddr> out;
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
        SockAddr a;
        std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
        a.len = ai->ai_addrlen;
        out.push_back(a);
    }
    freeaddrinfo(list);
    if (out.empty()) throw AddressError("resolve " + h + ": no TCP address");
    return out;
}

SockAddr local_address(int fd) {
    SockAddr a;
    a.len = sizeof a.storage;
    if (getsockname(fd, a.get(), &a.len) != 0) throw_sys("getsockname", "fd " + std::to_string(fd));
    return a;
}

SockAddr peer_address(int fd) {
    SockAddr a;
    a.len = sizeof a.storage;
    if (getpeername(fd, a.get(), &a.len) != 0) throw_sys("getpeername", "fd " + std::to_string(fd));
    return a;
}

std::string peer_label(int fd, int& err) {
    SockAddr a;
    a.len = sizeof a.storage;
    err = ::getpeername(fd, a.get(), &a.len) == 0 ? 0 : errno;
    return err == 0 ? a.to_string() : "fd " + std::to_string(fd);
}

}  // namespace iolab
