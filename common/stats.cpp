#include "common/stats.hpp"

#include <cstdio>

#include "common/address.hpp"

namespace iolab {

void announce_listening(int listen_fd) {
    SockAddr a = local_address(listen_fd);
    std::printf("listening on %s\n", a.to_string().c_str());
    std::fflush(stdout);
}

void print_summary(const ServerStats& s) {
    std::printf("summary: connections=%llu refused=%llu bytes_in=%llu bytes_out=%llu\n",
                static_cast<unsigned long long>(s.connections.load()),
                static_cast<unsigned long long>(s.refused.load()),
                static_cast<unsigned long long>(s.bytes_in.load()),
                static_cast<unsigned long long>(s.bytes_out.load()));
    std::fflush(stdout);
}

}  // namespace iolab
