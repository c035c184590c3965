#include "common/workers.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace iolab {

SharedCount::SharedCount() {
    void* page = ::mmap(nullptr, sizeof(std::atomic<std::size_t>), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) throw_sys("mmap", "the workers' shared count");
    n_ = new (page) std::atomic<std::size_t>(0);
}

SharedCount::~SharedCount() {
    ::munmap(n_, sizeof *n_);
}

bool SharedCount::try_take(std::size_t limit) noexcept {
    std::size_t now = n_->load();
    while (now < limit)
        if (n_->compare_exchange_weak(now, now + 1)) return true;
    return false;
}

void SharedCount::give_back() noexcept {
    n_->fetch_sub(1);
}

std::size_t SharedCount::value() const noexcept {
    return n_->load();
}

namespace {

struct Worker {
    pid_t pid = -1;
    Fd report;  // read end of the pipe the child writes its counters into
};

using Counters = std::array<uint64_t, 4>;  // connections, refused, bytes_in, bytes_out

// In the child: serve, report, and leave without running the parent's
// destructors or flushing its stdio buffers (_exit).
[[noreturn]] void run_child(int report_fd, unsigned index, const Log& log,
                            const std::function<void(ServerStats&, unsigned)>& serve) {
    // If the parent is killed outright, do not serve on as an orphan.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    ServerStats stats;
    try {
        serve(stats, index);
    } catch (const std::exception& e) {
        log.error("worker " + std::to_string(::getpid()) + ": " + e.what());
        ::_exit(1);
    }
    Counters c{stats.connections.load(), stats.refused.load(), stats.bytes_in.load(),
               stats.bytes_out.load()};
    // 32 bytes: below PIPE_BUF, so one write(2) delivers all or nothing.
    const bool ok = ::write(report_fd, c.data(), sizeof c) == static_cast<ssize_t>(sizeof c);
    ::_exit(ok ? 0 : 1);
}

// Reads a child's counters (EOF without them: it died) and reaps it.
bool collect(Worker& w, ServerStats& total, const Log& log) {
    Counters c{};
    std::size_t have = 0;
    while (have < sizeof c) {
        ssize_t n =
            ::read(w.report.get(), reinterpret_cast<char*>(c.data()) + have, sizeof c - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        have += static_cast<std::size_t>(n);
    }
    int status = 0;
    while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (have == sizeof c) {
        total.connections += c[0];
        total.refused += c[1];
        total.bytes_in += c[2];
        total.bytes_out += c[3];
    }
    const bool ok = have == sizeof c && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
        log.error("worker " + std::to_string(w.pid) + ": " +
                  (WIFSIGNALED(status)
                       ? "killed by signal " + std::to_string(WTERMSIG(status))
                       : "exited with status " + std::to_string(WEXITSTATUS(status))) +
                  ", its counters are missing from the summary");
    return ok;
}

}  // namespace

int serve_with_summary(unsigned n, StopSignals& stop, const Log& log,
                       const std::function<void(ServerStats&, unsigned)>& serve) {
    ServerStats total;
    if (n <= 1) {
        serve(total, 0);
        print_summary(total);
        return 0;
    }
    std::vector<Worker> workers;
    bool failed = false;
    for (unsigned i = 0; i < n && !failed; ++i) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) throw_sys("pipe2", "worker report");
        Fd rd(p[0]), wr(p[1]);
        const pid_t pid = ::fork();
        if (pid < 0) {
            log.error(sys_message("fork", "worker " + std::to_string(i + 1), errno));
            failed = true;
            break;
        }
        if (pid == 0) {
            workers.clear();  // the other children's pipes are not ours
            rd.reset();
            run_child(wr.get(), i, log, serve);
        }
        workers.push_back({pid, std::move(rd)});
    }
    // Wait for a stop signal, or for a child that ends on its own (its pipe
    // turns readable: EOF, or counters written before it should have).
    while (!failed) {
        std::vector<pollfd> fds{{stop.fd(), POLLIN, 0}};
        for (const Worker& w : workers)
            fds.push_back({w.report.get(), POLLIN, 0});
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            throw_sys("poll", "workers");
        }
        if ((fds[0].revents & POLLIN) && stop.check()) break;
        for (std::size_t i = 1; i < fds.size(); ++i)
            if (fds[i].revents != 0) failed = true;
    }
    for (const Worker& w : workers)
        ::kill(w.pid, SIGTERM);  // each one stops its loop and reports
    for (Worker& w : workers)
        if (!collect(w, total, log)) failed = true;
    print_summary(total);
    return failed ? 1 : 0;
}

}  // namespace iolab
