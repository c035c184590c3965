#include "common/io.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "common/error.hpp"

namespace iolab {

std::string IoResult::describe(std::string_view call, std::string_view peer) const {
    std::string s(call);
    if (!peer.empty()) (s += ' ') += peer;
    switch (status) {
        case Status::ok:
            return s + ": ok";
        case Status::would_block:
            return s + ": would block";
        case Status::eof:
            return s + ": end of file (peer closed)";
        case Status::error:
            return s + ": " + errno_text(err);
    }
    return s;
}

IoResult read_some(int fd, std::span<char> buf) {
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n > 0) return {static_cast<std::size_t>(n), IoResult::Status::ok, 0};
        if (n == 0) return {0, IoResult::Status::eof, 0};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {0, IoResult::Status::would_block, 0};
        return {0, IoResult::Status::error, errno};
    }
}

namespace {
// send() with MSG_NOSIGNAL on sockets; plain write() on pipes and files.
ssize_t write_once(int fd, const char* p, std::size_t n) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK) w = ::write(fd, p, n);
    return w;
}
}  // namespace

IoResult write_some(int fd, std::span<const char> data) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t w = write_once(fd, data.data() + done, data.size() - done);
        if (w > 0) {
            done += static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return {done, IoResult::Status::would_block, 0};
        return {done, IoResult::Status::error, w < 0 ? errno : EIO};
    }
    return {done, IoResult::Status::ok, 0};
}

IoResult write_all(int fd, std::span<const char> data) {
    IoResult r = write_some(fd, data);
    // On a blocking descriptor write_some only stops early on an error; a
    // would_block here means the caller handed us a non-blocking socket.
    return r;
}

IoResult read_exact(int fd, std::span<char> buf) {
    std::size_t done = 0;
    while (done < buf.size()) {
        IoResult r = read_some(fd, buf.subspan(done));
        if (!r.ok()) {
            r.bytes = done;
            return r;
        }
        done += r.bytes;
    }
    return {done, IoResult::Status::ok, 0};
}

void ignore_sigpipe() {
    std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace iolab
