#include "common/out_queue.hpp"

#include <algorithm>
#include <cstring>

namespace iolab {

std::size_t OutQueue::append(std::span<const char> data) {
    const std::size_t n = std::min(data.size(), room());
    if (n == 0) return 0;
    const std::size_t need = size() + n;
    if (tail_ + n > cap_) {
        if (need <= cap_) {
            // Enough space in total, but the free part is split: slide the
            // queued bytes to the front (at most limit bytes, rarely).
            std::memmove(buf_.get(), buf_.get() + head_, size());
        } else {
            // Grow geometrically, but never past the limit.
            // (need <= limit_, because n <= room()).
            std::size_t cap = std::min(std::max<std::size_t>(cap_ * 2, 4096), limit_);
            cap = std::max(cap, need);
            auto bigger = std::make_unique_for_overwrite<char[]>(cap);
            if (!empty()) std::memcpy(bigger.get(), buf_.get() + head_, size());
            buf_ = std::move(bigger);
            cap_ = cap;
        }
        tail_ = size();
        head_ = 0;
    }
    std::memcpy(buf_.get() + tail_, data.data(), n);
    tail_ += n;
    return n;
}

void OutQueue::consume(std::size_t n) noexcept {
    head_ += std::min(n, size());
    if (head_ == tail_) {
        head_ = tail_ = 0;
        if (cap_ > kKeepCapacity) {
            buf_.reset();
            cap_ = 0;
        }
    }
}

IoResult OutQueue::flush(int fd) {
    if (empty()) return {0, IoResult::Status::ok, 0};
    IoResult r = write_some(fd, pending());
    consume(r.bytes);
    return r;
}

void OutQueue::clear() noexcept {
    buf_.reset();
    cap_ = head_ = tail_ = 0;
}

}  // namespace iolab
