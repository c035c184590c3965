#include "common/server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include "common/error.hpp"
#include "common/socket.hpp"

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

Fd listen_and_announce(const ServerOptions& opts, bool nonblocking, bool reuse_port) {
    raise_nofile_limit();
    Fd listener =
        listen_tcp(opts.host, opts.port, {.reuse_port = reuse_port, .nonblocking = nonblocking});
    announce_listening(listener.get());
    return listener;
}

void add_out_limit_option(CLI::App& app, std::size_t& limit) {
    app.add_option("--out-limit", limit,
                   "Bytes queued per client before the server stops reading from it")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
}

void add_workers_option(CLI::App& app, unsigned& workers) {
    app.add_option("--workers", workers,
                   "Processes serving the one port (SO_REUSEPORT: the kernel deals the "
                   "connections out), each with its own loop and descriptor limit; "
                   "--max-clients and the summary line count them all together")
        ->check(CLI::Range(1u, 256u))
        ->capture_default_str();
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
