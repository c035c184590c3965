#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "common/error.hpp"

namespace iolab::test {

std::string bin(const std::string& name) {
    return std::string(IOLAB_BIN_DIR) + "/" + name;
}

Process::Process(std::vector<std::string> argv, SpawnOptions opts) {
    if (argv.empty()) throw std::invalid_argument("Process: empty argv");
    char tmpl[] = "/tmp/iolab-test-stderr-XXXXXX";
    int err_fd = mkstemp(tmpl);
    if (err_fd < 0) throw_sys("mkstemp", tmpl);
    err_path_ = tmpl;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) throw_sys("pipe2", "stdout");

    std::vector<char*> args;
    for (auto& a : argv)
        args.push_back(a.data());
    args.push_back(nullptr);

    pid_ = fork();
    if (pid_ < 0) throw_sys("fork", argv[0]);
    if (pid_ == 0) {
        // Child: only async-signal-safe calls until exec.
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        signal(SIGPIPE, SIG_DFL);
        if (opts.nofile) {
            rlimit rl{static_cast<rlim_t>(*opts.nofile), static_cast<rlim_t>(*opts.nofile)};
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (opts.stdin_null) {
            int devnull = open("/dev/null", O_RDONLY);
            if (devnull >= 0) dup2(devnull, 0);
        }
        dup2(pipefd[1], 1);
        dup2(err_fd, 2);
        execv(args[0], args.data());
        _exit(127);
    }
    close(pipefd[1]);
    close(err_fd);
    out_fd_ = pipefd[0];
    reader_ = std::thread([this] {
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(out_fd_, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            std::lock_guard lock(mu_);
            if (n <= 0) {
                out_closed_ = true;
                cv_.notify_all();
                return;
            }
            out_.append(buf, static_cast<size_t>(n));
            cv_.notify_all();
        }
    });
}

Process::~Process() {
    if (!exited_ && pid_ > 0) {
        kill(pid_, SIGKILL);
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    if (reader_.joinable()) reader_.join();
    if (out_fd_ >= 0) close(out_fd_);
    if (!err_path_.empty()) unlink(err_path_.c_str());
}

std::optional<std::string> Process::first_line(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    bool got = cv_.wait_for(lock, timeout,
                            [&] { return out_.find('\n') != std::string::npos || out_closed_; });
    auto nl = out_.find('\n');
    if (!got || nl == std::string::npos) return std::nullopt;
    return out_.substr(0, nl);
}

void Process::reap(int status) {
    exited_ = true;
    if (WIFEXITED(status))
        exit_code_ = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        exit_code_ = 128 + WTERMSIG(status);
}

bool Process::running() {
    if (exited_) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        reap(status);
        return false;
    }
    return true;
}

int Process::wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            kill(pid_, SIGKILL);
            int status = 0;
            waitpid(pid_, &status, 0);
            exited_ = true;
            exit_code_ = -1;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (reader_.joinable()) reader_.join();  // stdout is complete once the child is gone
    return exit_code_;
}

int Process::stop(int sig, std::chrono::milliseconds timeout) {
    if (running()) kill(pid_, sig);
    return wait(timeout);
}

std::string Process::out() {
    std::lock_guard lock(mu_);
    return out_;
}

std::string Process::err() const {
    std::ifstream f(err_path_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

double Process::cpu_seconds() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    // Fields after the command: state(3) ... utime(14) stime(15).
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

ServerProcess::ServerProcess(std::vector<std::string> argv, SpawnOptions opts)
    : Process(std::move(argv), opts) {
    auto line = first_line(std::chrono::seconds(20));
    INFO("stderr: " << err());
    REQUIRE(line.has_value());
    line_ = *line;
    static const std::regex re(R"(^listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+)$)");
    std::smatch m;
    INFO("first line: '" << line_ << "'");
    REQUIRE(std::regex_match(line_, m, re));
    host_ = m[1].str();
    if (host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
    port_ = static_cast<uint16_t>(std::stoi(m[2].str()));
    REQUIRE(port_ != 0);
}

RunResult run(std::vector<std::string> argv, std::chrono::milliseconds timeout, SpawnOptions opts) {
    Process p(std::move(argv), opts);
    RunResult r;
    r.exit_code = p.wait(timeout);
    r.out = p.out();
    r.err = p.err();
    return r;
}

std::optional<Summary> parse_summary(const std::string& text) {
    static const std::regex re(
        R"(summary: connections=([0-9]+) refused=([0-9]+) bytes_in=([0-9]+) bytes_out=([0-9]+))");
    std::smatch m;
    if (!std::regex_search(text, m, re)) return std::nullopt;
    return Summary{std::stoull(m[1].str()), std::stoull(m[2].str()), std::stoull(m[3].str()),
                   std::stoull(m[4].str())};
}

long proc_status_value(pid_t pid, const std::string& field) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    const std::string prefix = field + ":";
    std::string line;
    while (std::getline(status, line))
        if (line.starts_with(prefix)) return std::stol(line.substr(prefix.size()));
    return -1;
}

}  // namespace iolab::test
