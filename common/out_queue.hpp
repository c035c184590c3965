// OutQueue: the bytes a non-blocking server owes one client, with a hard bound.
//
// An event-driven server never waits for a slow reader: when the kernel's send
// buffer is full, write(2) says EAGAIN and the rest of the echo has to wait
// here until the socket turns writable again. Without a bound, one client that
// sends and never reads makes the server hold everything it sent. With a bound,
// the server stops reading from that client while its queue is full
// (backpressure): the client's bytes then wait in the kernel's buffers, the
// receive window closes, and the client's own write(2) blocks — the slowness
// is pushed back to the one who causes it.
//
// Memory is taken only when bytes are actually queued (most echoes go straight
// from the read buffer to the socket) and a large buffer is given back once it
// drains, so tens of thousands of idle clients cost a few pointers each.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "common/io.hpp"

namespace iolab {

class OutQueue {
  public:
    static constexpr std::size_t kDefaultLimit = 256 * 1024;
    // A drained buffer larger than this is freed; a smaller one is kept for reuse.
    static constexpr std::size_t kKeepCapacity = 64 * 1024;

    explicit OutQueue(std::size_t limit = kDefaultLimit) noexcept : limit_(limit) {}

    [[nodiscard]] std::size_t size() const noexcept { return tail_ - head_; }
    [[nodiscard]] bool empty() const noexcept { return head_ == tail_; }
    [[nodiscard]] bool full() const noexcept { return size() >= limit_; }
    // How many more bytes append() would take now.
    [[nodiscard]] std::size_t room() const noexcept { return full() ? 0 : limit_ - size(); }
    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    // Bytes allocated now (for tests and the curious): 0 when nothing is queued
    // for a while, never more than max(limit, kKeepCapacity).
    [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }

    // Copies as much of `data` as fits under the limit; returns how many bytes
    // it took (the caller decides what to do with the rest — an echo server
    // reads no more than room() so that nothing is ever left over).
    std::size_t append(std::span<const char> data);

    // The queued bytes, oldest first.
    [[nodiscard]] std::span<const char> pending() const noexcept {
        return {buf_.get() + head_, size()};
    }
    // Drops the first `n` queued bytes (n <= size()).
    void consume(std::size_t n) noexcept;

    // write_some() of everything queued; the written bytes leave the queue.
    // bytes = what this call wrote. ok when the queue is now empty,
    // would_block when the socket's send buffer filled first, error otherwise.
    IoResult flush(int fd);

    // Forgets everything queued and frees the buffer.
    void clear() noexcept;

  private:
    std::unique_ptr<char[]> buf_;
    std::size_t cap_ = 0;
    std::size_t head_ = 0;  // first queued byte
    std::size_t tail_ = 0;  // one past the last queued byte
    std::size_t limit_;
};

}  // namespace iolab
