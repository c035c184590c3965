#include "common/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <string>

namespace iolab {

void log_line(std::string_view line) {
    std::string s(line);
    s += '\n';
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(STDERR_FILENO, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

}  // namespace iolab
