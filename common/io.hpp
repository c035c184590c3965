// Reading and writing with the exact EINTR / EAGAIN / short-count semantics the
// labs rely on. None of these throw: the result says how many bytes moved and
// why the call stopped, so a server can decide per client.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace iolab {

struct IoResult {
    enum class Status {
        ok,           // the call did what was asked (or moved > 0 bytes, for *_some)
        would_block,  // EAGAIN/EWOULDBLOCK on a non-blocking descriptor
        eof,          // the peer closed its sending side (read returned 0)
        error,        // see err
    };
    std::size_t bytes = 0;  // bytes moved before the call stopped, in every case
    Status status = Status::ok;
    int err = 0;  // errno when status == error

    [[nodiscard]] bool ok() const noexcept { return status == Status::ok; }
    [[nodiscard]] bool would_block() const noexcept { return status == Status::would_block; }
    [[nodiscard]] bool eof() const noexcept { return status == Status::eof; }
    [[nodiscard]] bool error() const noexcept { return status == Status::error; }
    // "read 127.0.0.1:5000: Connection reset by peer", "... : end of file", ...
    [[nodiscard]] std::string describe(std::string_view call, std::string_view peer) const;
};

// One read(2), retried on EINTR. ok with bytes > 0, eof, would_block or error.
IoResult read_some(int fd, std::span<char> buf);

// Writes as much as the kernel takes now: loops over short writes until all is
// written or the socket would block. ok when everything was written;
// would_block with the count written so far otherwise. Uses send(MSG_NOSIGNAL)
// on sockets, so a closed peer gives EPIPE instead of killing the process.
IoResult write_some(int fd, std::span<const char> data);

// Blocking: writes everything (ok) or stops at the first error.
IoResult write_all(int fd, std::span<const char> data);

// Blocking: reads exactly buf.size() bytes (ok), or stops at eof / error with
// the count read so far.
IoResult read_exact(int fd, std::span<char> buf);

// SIGPIPE never kills an iolab process: writes to a closed socket report EPIPE.
void ignore_sigpipe();

}  // namespace iolab
