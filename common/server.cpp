#include "common/server.hpp"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <exception>

#include "common/address.hpp"
#include "common/error.hpp"

namespace iolab {

void add_server_options(CLI::App& app, ServerOptions& opts) {
    app.add_option("--host", opts.host, "Address to listen on (IPv4, IPv6 or a name)")
        ->capture_default_str();
    app.add_option("--port", opts.port, "TCP port; 0 picks a free port")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    app.add_option("--max-clients", opts.max_clients,
                   "Connections served at once; more are accepted and closed")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24))
        ->capture_default_str();
    app.add_flag("-v,--verbose", opts.verbose, "Log every connect and disconnect to stderr");
    app.set_version_flag("--version", std::string("iolab ") + IOLAB_VERSION);
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

uint64_t raise_nofile_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) throw_sys("getrlimit", "RLIMIT_NOFILE");
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) throw_sys("setrlimit", "RLIMIT_NOFILE");
    }
    return rl.rlim_cur;
}

void log_line(std::string_view line) {
    std::string s(line);
    s += '\n';
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(STDERR_FILENO, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

int guarded_main(std::string_view program, const std::function<int()>& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        log_line(std::string(program) + ": " + e.what());
        return 1;
    }
}

}  // namespace iolab
