// loadgen's engine: worker threads, each with its own epoll loop over
// non-blocking sockets, and the figures they collect.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "clients/loadgen/options.hpp"
#include "common/fd.hpp"
#include "common/histogram.hpp"

namespace loadgen {

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

// The counters a worker keeps and a report adds up: histograms bucket by
// bucket, counts by sum (max_open too: workers and processes hold their
// connections at the same time).
struct Counts {
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
    // What the workers themselves cost over the measured window (getrusage
    // RUSAGE_THREAD of each worker thread, summed): CPU time and how often
    // they gave up the CPU (voluntary: blocked in epoll_wait) or lost it.
    uint64_t client_cpu_ns = 0;
    uint64_t client_vcsw = 0;
    uint64_t client_ivcsw = 0;
    // The adaptive wait (--busy-poll auto), over the whole run: time with a
    // spin budget, time in all, times the spin was tried again after a
    // sleep, changes of choice, changes to sleep because a worker waited for
    // a CPU (wait_policy.hpp).
    uint64_t wait_spin_ns = 0;
    uint64_t wait_total_ns = 0;
    uint64_t wait_probes = 0;  // "tries" in the text; the JSON key of format 1
    uint64_t wait_switches = 0;
    uint64_t wait_contended = 0;
    uint64_t wait_blind_ns = 0;  // time with no run_delay figure: contention unseen
    void add(const Counts& o);
};

// All figures of a run (or of several runs merged).
struct Results : Counts {
    double duration_s = 0;  // measured
    double rps = 0;         // requests / duration (merge: sum over runs)
    double all_up_s = -1;   // start to the last connection up; -1: not all came up
    int runs = 1;           // reports merged into this one
    // (kind name, code) -> (text, count)
    std::map<std::pair<std::string, int>, std::pair<std::string, uint64_t>> errors;
    std::map<int, uint64_t> status;  // http status codes
    // --server-pid: what the server spent over the measured window (all its
    // threads): /proc/PID/stat utime + stime, /proc/PID/task/*/status switches.
    int server_pid = 0;  // 0: not measured
    double server_cpu_s = 0;
    uint64_t server_vcsw = 0;
    uint64_t server_ivcsw = 0;
    [[nodiscard]] uint64_t error_total() const;
};

// Live figures a worker publishes once a second (with Options::live).
struct LiveSnapshot {
    uint64_t requests = 0;
    uint64_t errors = 0;
    uint64_t open = 0;
    iolab::Histogram latency;
};

// What the workers share: the order to stop, and with -n how many workers
// still have requests of their share to do. Owned by the Engine; a Worker only
// holds a reference. Every worker's epoll set holds fd(): writing to it wakes
// them all.
class RunControl {
  public:
    explicit RunControl(unsigned shares);
    [[nodiscard]] int fd() const noexcept { return wake_.get(); }
    // Every worker ends now (a signal). Safe from any thread.
    void stop() noexcept;
    [[nodiscard]] bool stopped() const noexcept { return stop_.load(std::memory_order_relaxed); }
    // A worker finished its share of -n; the last one wakes the followers.
    void share_done() noexcept;
    [[nodiscard]] bool shares_done() const noexcept { return shares_left_.load() == 0; }

  private:
    void wake() noexcept;
    iolab::Fd wake_;  // eventfd
    std::atomic<bool> stop_{false};
    std::atomic<unsigned> shares_left_;
};

class Worker;
struct WaitShared;

class Engine {
  public:
    // Plans the run and builds every worker (epoll set, connections, buffers);
    // throws if the system refuses, leaking nothing.
    explicit Engine(const Options& o);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Starts the workers; returns at once. The run (first connects, the
    // duration, the warm-up) starts at `start_ns` on the monotonic clock, or
    // now when 0 or past.
    void start(uint64_t start_ns = 0);
    // Asks the workers to stop now (signal). Safe from any thread.
    void request_stop();
    // True once every worker has finished.
    [[nodiscard]] bool finished() const;
    // Waits for the workers, closes their connections and merges their figures.
    Results join();
    // The sum of the workers' latest snapshots.
    LiveSnapshot live() const;
    // The instant the run started (valid after start()).
    [[nodiscard]] uint64_t started_at() const noexcept { return start_ns_; }

  private:
    const Options& opts_;
    std::unique_ptr<RunControl> control_;
    std::unique_ptr<WaitShared> wait_;  // --busy-poll auto only
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::thread> threads_;
    std::atomic<unsigned> running_{0};
    uint64_t start_ns_ = 0;
};

// CLOCK_MONOTONIC in ns.
uint64_t now_ns() noexcept;

// A process's CPU time (all its threads) and context switches, read from
// /proc/PID/stat and /proc/PID/task/*/status. ok false when the process is gone.
struct ProcessUsage {
    bool ok = false;
    double cpu_s = 0;  // utime + stime, in clock ticks' resolution
    // Per thread id: (voluntary, involuntary) switches so far.
    std::map<int, std::pair<uint64_t, uint64_t>> tasks;
};
ProcessUsage process_usage(int pid);
// The switches from `a` to `b`, thread by thread: a thread born in between
// counts from 0; one that ended in between is not in `b`, and its switches
// since `a` are lost (the kernel keeps no per-thread figure of a dead thread).
std::pair<uint64_t, uint64_t> switches_between(const ProcessUsage& a, const ProcessUsage& b);

}  // namespace loadgen
