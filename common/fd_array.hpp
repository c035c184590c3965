// FdArray<T>: one T per descriptor, kept dense in a vector (what echo-poll
// hands to poll() whole, what echo-nonblocking walks every round), with an
// index from descriptor number to entry so that finding one is O(1).
//
// Erasing an entry moves the last one into its place: the vector stays
// dense, and a loop that walks it backwards skips nothing when the entry it
// is looking at goes (the one that moves in was looked at already), while
// entries added meanwhile land at the end, past where it started.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace iolab {

template <class T>
class FdArray {
  public:
    // fd's entry; added, as `init`, when fd has none yet.
    T& entry(int fd, const T& init) {
        const auto f = static_cast<std::size_t>(fd);
        if (f >= slot_.size()) slot_.resize(f + 1, kNone);
        if (slot_[f] == kNone) {
            slot_[f] = items_.size();
            items_.push_back(init);
            fd_of_.push_back(fd);
        }
        return items_[slot_[f]];
    }

    // Removes fd's entry, if any: the last entry moves into its place.
    void erase(int fd) {
        const auto f = static_cast<std::size_t>(fd);
        if (f >= slot_.size() || slot_[f] == kNone) return;
        const std::size_t i = slot_[f];
        items_[i] = items_.back();
        fd_of_[i] = fd_of_.back();
        slot_[static_cast<std::size_t>(fd_of_[i])] = i;
        items_.pop_back();
        fd_of_.pop_back();
        slot_[f] = kNone;
    }

    [[nodiscard]] std::vector<T>& items() noexcept { return items_; }
    [[nodiscard]] int fd_at(std::size_t i) const noexcept { return fd_of_[i]; }

  private:
    static constexpr std::size_t kNone = SIZE_MAX;
    std::vector<T> items_;           // dense
    std::vector<int> fd_of_;         // items_[i] belongs to descriptor fd_of_[i]
    std::vector<std::size_t> slot_;  // descriptor -> its index in items_, or kNone
};

}  // namespace iolab
