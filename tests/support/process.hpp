// Test support: start a real program of the suite, read what it prints, stop it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace iolab::test {

// The path of a program in <build>/bin.
std::string bin(const std::string& name);

struct SpawnOptions {
    std::optional<uint64_t> nofile;  // RLIMIT_NOFILE (soft and hard) for the child
    bool stdin_null = true;
};

// A running child process with stdout read by a thread and stderr kept in a
// temporary file. The destructor kills (SIGKILL) and reaps a child still running.
class Process {
  public:
    explicit Process(std::vector<std::string> argv, SpawnOptions opts = {});
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    // Waits for the first complete stdout line; nullopt on timeout or exit.
    std::optional<std::string> first_line(std::chrono::milliseconds timeout);

    // Sends `sig`, waits up to `timeout` for the exit; returns the exit code,
    // 128+signal if a signal ended it, or -1 if it did not exit in time (then
    // it is killed).
    int stop(int sig, std::chrono::milliseconds timeout);
    // Waits for the exit without sending anything (same return values).
    int wait(std::chrono::milliseconds timeout);
    [[nodiscard]] bool running();

    // Everything printed on stdout so far / on stderr so far.
    std::string out();
    std::string err() const;

    // User + system CPU time consumed so far, in seconds (from /proc/PID/stat).
    double cpu_seconds() const;

  private:
    void reap(int status);
    pid_t pid_ = -1;
    bool exited_ = false;
    int exit_code_ = -1;
    int out_fd_ = -1;
    std::string err_path_;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::string out_;
    bool out_closed_ = false;
};

// A server started with --port 0: its host and port parsed from the first line
// "listening on HOST:PORT". Fails the test (REQUIRE) if that line does not come.
class ServerProcess : public Process {
  public:
    explicit ServerProcess(std::vector<std::string> argv, SpawnOptions opts = {});
    [[nodiscard]] uint16_t port() const noexcept { return port_; }
    [[nodiscard]] const std::string& host() const noexcept { return host_; }
    [[nodiscard]] const std::string& listening_line() const noexcept { return line_; }

  private:
    std::string line_;
    std::string host_;
    uint16_t port_ = 0;
};

// Runs a program to completion with a time limit.
struct RunResult {
    int exit_code = -1;  // as Process::wait
    std::string out;
    std::string err;
};
RunResult run(std::vector<std::string> argv, std::chrono::milliseconds timeout,
              SpawnOptions opts = {});

// The parsed summary line "summary: connections=N refused=N bytes_in=N bytes_out=N".
struct Summary {
    uint64_t connections = 0, refused = 0, bytes_in = 0, bytes_out = 0;
};
std::optional<Summary> parse_summary(const std::string& stdout_text);

// The number after "FIELD:" in /proc/PID/status ("VmRSS" in KiB, "Threads");
// -1 when the process or the field is not there.
long proc_status_value(pid_t pid, const std::string& field);
inline long rss_kib(pid_t pid) {
    return proc_status_value(pid, "VmRSS");
}
inline long thread_count(pid_t pid) {
    return proc_status_value(pid, "Threads");
}

}  // namespace iolab::test
