#include "common/error.hpp"

#include <cstring>

namespace iolab {

namespace {
std::string prefix(std::string_view call, std::string_view context) {
    std::string s(call);
    if (!context.empty()) {
        s += ' ';
        s += context;
    }
    return s;
}
}  // namespace

SysError::SysError(std::string_view call, std::string_view context, int err)
    : std::system_error(err, std::system_category(), prefix(call, context)) {}

void throw_sys(std::string_view call, std::string_view context, int err) {
    throw SysError(call, context, err);
}

std::string errno_text(int err) {
    return std::system_category().message(err);
}

std::string sys_message(std::string_view call, std::string_view context, int err) {
    return prefix(call, context) + ": " + errno_text(err);
}

std::string sys_message_fdless(std::string_view call, std::string_view context, int err) {
    char text[128];
    const char* what = ::strerror_r(err, text, sizeof text);  // GNU: may return a static string
    return prefix(call, context) + ": " + what;
}

}  // namespace iolab
