// A scripted raw TCP server for the client tests: for each connection it reads
// the request head, then sends the scripted pieces (with pauses), then closes,
// resets or holds the connection open. It serves any number of connections
// until destroyed; misbehaviour is the point.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.hpp"

namespace iolab::test {

struct RawStep {
    std::string data;
    std::chrono::milliseconds pause_after{0};
};

enum class RawEnd { close, reset, hold };

class RawServer {
  public:
    RawServer(std::vector<RawStep> script, RawEnd end = RawEnd::close);
    ~RawServer();
    RawServer(const RawServer&) = delete;
    RawServer& operator=(const RawServer&) = delete;

    [[nodiscard]] uint16_t port() const noexcept { return port_; }
    [[nodiscard]] std::string url(const std::string& path = "/") const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    // The request heads received so far.
    std::vector<std::string> requests();

  private:
    void serve(Fd conn);

    std::vector<RawStep> script_;
    RawEnd end_;
    Fd listener_;
    uint16_t port_ = 0;
    std::thread acceptor_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;
    std::vector<std::string> requests_;
};

}  // namespace iolab::test
