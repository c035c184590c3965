#include "common/signals.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>

#include "common/error.hpp"
#include "common/io.hpp"

namespace iolab {

StopSignals::StopSignals() {
    ignore_sigpipe();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0)
        throw_sys("pthread_sigmask", "SIGINT/SIGTERM", e);
    fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd_) throw_sys("signalfd", "SIGINT/SIGTERM");
    wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_) throw_sys("eventfd", "stop signals");
}

bool StopSignals::check() {
    signalfd_siginfo info{};
    while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        signo_.store(static_cast<int>(info.ssi_signo));
        requested_.store(true);
    }
    return requested_.load();
}

void StopSignals::request() {
    requested_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
}

StopSignals::Watch::Watch(StopSignals& owner, std::function<void()> on_stop) : owner_(owner) {
    thread_ = std::thread([&owner, on_stop = std::move(on_stop)] {
        pollfd fds[2] = {{owner.fd_.get(), POLLIN, 0}, {owner.wake_.get(), POLLIN, 0}};
        for (;;) {
            int n = ::poll(fds, 2, -1);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            if (fds[0].revents & POLLIN) {
                if (owner.check()) break;
                continue;
            }
            if (fds[1].revents & POLLIN) break;
        }
        if (owner.requested_.load()) on_stop();
    });
}

StopSignals::Watch::~Watch() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(owner_.wake_.get(), &one, sizeof one);
    thread_.join();
}

}  // namespace iolab
