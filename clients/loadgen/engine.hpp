// loadgen's engine: worker threads, each with its own epoll loop over
// non-blocking sockets, and the figures they collect.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/address.hpp"
#include "common/histogram.hpp"

namespace loadgen {

enum class Mode { echo, http, raw, idle };
const char* mode_name(Mode m) noexcept;

// One server address and the requests sent to it, in turn, on each connection.
struct Target {
    iolab::SockAddr addr;
    std::string name;                   // "127.0.0.1:8080"
    std::vector<std::string> requests;  // http: one GET per URL; raw: the --send bytes
};

// Everything a run needs, resolved and checked: read by every worker, never
// changed once the workers start.
struct Plan {
    Mode mode = Mode::echo;
    std::vector<Target> targets;
    unsigned threads = 1;
    uint64_t connections = 10;
    uint64_t active = 0;                        // idle mode: connections running the echo workload
    double duration_s = 0;                      // 0: run until `requests` are done
    uint64_t requests = 0;                      // 0: run for duration_s
    double rate = 0;                            // > 0: open loop, requests/s in total
    double ramp_s = 0;                          // connection setup spread over this long
    double warmup_s = 0;                        // requests done before this are not counted
    uint64_t timeout_ns = 10'000'000'000;       // per request and per connect
    std::size_t size = 64;                      // echo: bytes per request
    bool verify = false;                        // echo: compare every byte
    uint64_t expect_bytes = 0;                  // raw: reply length
    bool expect_line = false;                   // raw: reply ends at "\n"
    std::vector<iolab::SockAddr> sources;       // bind(addr:0) with IP_BIND_ADDRESS_NO_PORT
    bool live = false;                          // workers publish a snapshot once a second
    uint64_t reconnect_delay_ns = 100'000'000;  // after a failure mid-run
};

// What kind of failure an error counter counts.
enum class ErrorKind : uint8_t {
    connect,   // code: errno (ETIMEDOUT for --timeout during the handshake)
    read,      // code: errno
    write,     // code: errno
    timeout,   // no complete reply within --timeout
    closed,    // the server closed the connection (mid-reply or while idle)
    verify,    // echo bytes differ from those sent
    protocol,  // code 0: bytes nobody asked for; http: 1 + iolab::http::Error
    status,    // http: a 4xx or 5xx response; code: the status
    count_
};
const char* error_kind_name(ErrorKind k) noexcept;
// The text beside a counter: the errno text, the HTTP parser's error, ...
std::string error_text(ErrorKind k, int code, uint64_t timeout_ns);

// All figures of a run (or of several runs merged).
struct Results {
    iolab::Histogram latency;      // closed loop: from the send; open loop: from the intended send
    iolab::Histogram uncorrected;  // open loop: from the actual send (empty in closed loop)
    iolab::Histogram connect;      // connect() to established
    uint64_t requests = 0;         // completed without error
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    uint64_t connects = 0;          // handshakes completed
    uint64_t connect_failures = 0;  // handshakes that failed
    uint64_t reconnects = 0;        // connections opened again after a close or failure
    uint64_t max_open = 0;          // the most connections open at once (sum of threads)
    double duration_s = 0;          // measured
    double rps = 0;                 // requests / duration (merge: sum over runs)
    double all_up_s = -1;           // start to the last connection up; -1: not all came up
    // (kind name, code) -> (text, count)
    std::map<std::pair<std::string, int>, std::pair<std::string, uint64_t>> errors;
    std::map<int, uint64_t> status;  // http status codes
    [[nodiscard]] uint64_t error_total() const;
};

// Live figures a worker publishes once a second (with Plan::live).
struct LiveSnapshot {
    uint64_t requests = 0;
    uint64_t errors = 0;
    uint64_t open = 0;
    iolab::Histogram latency;
};

class Engine {
  public:
    explicit Engine(const Plan& plan);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Starts the workers; returns at once.
    void start();
    // Asks the workers to stop now (signal). Safe from any thread.
    void request_stop();
    // True once every worker has finished.
    [[nodiscard]] bool finished() const;
    // Waits for the workers and merges their figures.
    Results join();
    // The sum of the workers' latest snapshots.
    LiveSnapshot live() const;

  private:
    struct Worker;
    const Plan& plan_;
    std::vector<Worker*> workers_;
    int stop_fd_ = -1;  // eventfd in every worker's epoll set
    std::atomic<bool> stop_{false};
    std::atomic<unsigned> running_{0};
    std::atomic<unsigned> quota_workers_left_{0};  // -n: workers with requests still to do
    uint64_t start_ns_ = 0;
};

uint64_t now_ns() noexcept;

}  // namespace loadgen
