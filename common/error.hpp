// Errors that name the failing call, its context and the errno text:
//     connect 127.0.0.1:9007: Connection refused
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

namespace iolab {

// A failed system call. what() reads "CALL CONTEXT: strerror(errno)".
class SysError : public std::system_error {
  public:
    SysError(std::string_view call, std::string_view context, int err);
    [[nodiscard]] int err() const noexcept { return code().value(); }
};

// Throws SysError for `call` on `context` with `err` (errno by default).
[[noreturn]] void throw_sys(std::string_view call, std::string_view context = {}, int err = errno);

// The non-throwing form, for paths where a server must carry on (accept, read,
// write): the same text, to be logged.
[[nodiscard]] std::string sys_message(std::string_view call, std::string_view context, int err);

// The same text, formatted with strerror_r alone: for code that runs when the
// process has no descriptor to spare (EMFILE). errno_text()'s virtual call into
// std::error_category is one that UBSan checks by probing memory through a
// pipe, which it cannot create then.
[[nodiscard]] std::string sys_message_fdless(std::string_view call, std::string_view context,
                                             int err);

// strerror as a std::string, thread-safe.
[[nodiscard]] std::string errno_text(int err);

}  // namespace iolab
