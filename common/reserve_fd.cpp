#include "common/reserve_fd.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/log.hpp"

namespace iolab {

ReserveFd::ReserveFd() {
    if (!rearm()) throw_sys("open", "/dev/null (reserve descriptor)");
}

bool ReserveFd::rearm() noexcept {
    if (!fd_) fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return fd_.valid();
}

ReserveFd::Outcome ReserveFd::shed(int listen_fd, int err, std::size_t max) {
    Outcome out;
    if (err != EMFILE && err != ENFILE) {
        // ENOBUFS / ENOMEM: the kernel is short of memory; a free descriptor
        // would not help. Back off instead.
        out.pause = true;
        return out;
    }
    fd_.reset();  // close(2): one slot of the descriptor table is free again
    while (out.shed < max) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            // close(2) on a connection nobody has read from: the kernel sends a
            // FIN (or a RST if bytes were already waiting unread).
            ::close(fd);
            ++out.shed;
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        break;  // EAGAIN: the backlog is empty; ENFILE: the system is out too
    }
    // Take the slot back. Nothing else runs in between in a single-threaded
    // loop, so the lowest free number is the one we just gave back.
    if (!rearm() || out.shed == 0) out.pause = true;
    return out;
}

void ShedReport::note(const Log& log, std::string_view where, int err, std::size_t shed) {
    total_ += shed;
    since_last_ += shed;
    auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < every_) return;
    logged_ = true;
    last_ = now;
    // strerror_r, not errno_text(): this runs while the process has no
    // descriptor to spare, and UBSan's check of a virtual call (the one into
    // std::error_category) needs a pipe to probe memory — it would fail here.
    char text[128];
    const char* what = ::strerror_r(err, text, sizeof text);
    log.error("accept " + std::string(where) + ": " + what + ": " + std::to_string(since_last_) +
              " pending connection(s) accepted and closed (reserve descriptor), " +
              std::to_string(total_) + " in all");
    since_last_ = 0;
}

}  // namespace iolab
