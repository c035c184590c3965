// Log lines to stderr: one write(2) per line, so lines from threads never mix.
// Part of the socket layer (no CLI11 here): ReserveFd and the connection
// pieces log through it.
#pragma once

#include <string_view>

namespace iolab {

// One line to stderr in a single write(2), so lines from threads never mix.
void log_line(std::string_view line);

// Logs only when -v was given.
class Log {
  public:
    explicit Log(bool verbose) : verbose_(verbose) {}
    [[nodiscard]] bool verbose() const noexcept { return verbose_; }
    void info(std::string_view line) const {
        if (verbose_) log_line(line);
    }
    void error(std::string_view line) const { log_line(line); }

  private:
    bool verbose_;
};

}  // namespace iolab
