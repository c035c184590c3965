#include "tests/support/raw_server.hpp"

#include <poll.h>
#include <unistd.h>

#include "common/address.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"

namespace iolab::test {

RawServer::RawServer(std::vector<RawStep> script, RawEnd end)
    : script_(std::move(script)), end_(end) {
    listener_ = listen_tcp("127.0.0.1", 0);
    port_ = local_address(listener_.get()).port();
    acceptor_ = std::thread([this] {
        for (;;) {
            pollfd p{listener_.get(), POLLIN, 0};
            int n = ::poll(&p, 1, 50);
            {
                std::lock_guard lock(mu_);
                if (stopping_) return;
            }
            if (n <= 0) continue;
            Accepted a = accept_client(listener_.get());
            if (!a) continue;
            std::lock_guard lock(mu_);
            workers_.emplace_back([this, fd = std::move(a.fd)]() mutable { serve(std::move(fd)); });
        }
    });
}

RawServer::~RawServer() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    stop_cv_.notify_all();
    acceptor_.join();
    for (auto& t : workers_)
        t.join();
}

std::vector<std::string> RawServer::requests() {
    std::lock_guard lock(mu_);
    return requests_;
}

void RawServer::serve(Fd conn) {
    // Read the request head (bounded: 64 KiB, 5 s).
    std::string head;
    char buf[4096];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536 &&
           std::chrono::steady_clock::now() < deadline) {
        pollfd p{conn.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        ssize_t n = ::read(conn.get(), buf, sizeof buf);
        if (n <= 0) break;
        head.append(buf, static_cast<std::size_t>(n));
    }
    {
        std::lock_guard lock(mu_);
        requests_.push_back(head);
    }
    for (const RawStep& step : script_) {
        if (!write_all(conn.get(), {step.data.data(), step.data.size()}).ok()) return;
        if (step.pause_after.count() > 0) {
            std::unique_lock lock(mu_);
            if (stop_cv_.wait_for(lock, step.pause_after, [&] { return stopping_; })) return;
        }
    }
    if (end_ == RawEnd::reset) {
        linger l{1, 0};  // close() now sends RST
        ::setsockopt(conn.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    } else if (end_ == RawEnd::hold) {
        std::unique_lock lock(mu_);
        stop_cv_.wait(lock, [&] { return stopping_; });
    }
}

}  // namespace iolab::test
