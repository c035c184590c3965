// The libevent loop the callbacks and coroutines modes share: an event_base
// and an evdns_base, so that name resolution never blocks the loop.
#pragma once

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "common/address.hpp"

namespace fetcher {

class EventLoop {
  public:
    EventLoop() {
        base_ = event_base_new();
        if (!base_) throw std::runtime_error("event_base_new failed");
        // Reads /etc/resolv.conf and /etc/hosts.
        dns_ = evdns_base_new(base_,
                              EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!dns_) {
            // No usable resolv.conf: numeric hosts and /etc/hosts still work.
            dns_ = evdns_base_new(base_, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
            if (dns_) evdns_base_load_hosts(dns_, nullptr);
        }
        if (!dns_) {
            event_base_free(base_);
            throw std::runtime_error("evdns_base_new failed");
        }
    }
    ~EventLoop() {
        evdns_base_free(dns_, 1);  // 1: fail pending lookups (there are none by then)
        event_base_free(base_);
    }
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    [[nodiscard]] event_base* base() const noexcept { return base_; }
    [[nodiscard]] evdns_base* dns() const noexcept { return dns_; }
    // Runs until event_base_loopexit (the last fetch calls it).
    void run() { event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY); }

  private:
    event_base* base_ = nullptr;
    evdns_base* dns_ = nullptr;
};

inline evutil_addrinfo resolve_hints() {
    evutil_addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_NUMERICSERV;
    return hints;
}

// Copies an evdns answer into SockAddrs and frees it.
inline std::vector<iolab::SockAddr> take_addresses(evutil_addrinfo* list) {
    std::vector<iolab::SockAddr> out;
    for (evutil_addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
        iolab::SockAddr a;
        std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
        a.len = static_cast<socklen_t>(ai->ai_addrlen);
        out.push_back(a);
    }
    if (list) evutil_freeaddrinfo(list);
    return out;
}

inline timeval to_timeval(std::chrono::milliseconds ms) {
    if (ms.count() < 0) ms = std::chrono::milliseconds(0);
    return timeval{static_cast<time_t>(ms.count() / 1000),
                   static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

}  // namespace fetcher
