#include "common/server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

#include "common/address.hpp"
#include "common/error.hpp"

namespace iolab {

void add_server_options(CLI::App& app, std::string_view program, ServerOptions& opts,
                        std::string_view verbose_help) {
    setup_program(app, program, kServerExitCodes);
    app.add_option("--host", opts.host, "Address to listen on (IPv4, IPv6 or a name)")
        ->capture_default_str();
    app.add_option("--port", opts.port, "TCP port (0-65535); 0 picks a free port")
        ->capture_default_str();
    app.add_option("--max-clients", opts.max_clients,
                   "Connections served at once; more are accepted and closed")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24))
        ->capture_default_str();
    app.add_flag("-v,--verbose", opts.verbose, std::string(verbose_help));
}

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

void OpenConnections::add(int fd) {
    std::lock_guard lock(mu_);
    fds_.insert(fd);
    if (stopping_) ::shutdown(fd, SHUT_RDWR);
}

void OpenConnections::remove(int fd) {
    std::lock_guard lock(mu_);
    fds_.erase(fd);
}

void OpenConnections::shutdown_all() {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (int fd : fds_)
        ::shutdown(fd, SHUT_RDWR);
}

std::size_t OpenConnections::size() const {
    std::lock_guard lock(mu_);
    return fds_.size();
}

}  // namespace iolab
