#include "tests/support/temp_dir.hpp"

#include <stdlib.h>

#include <system_error>
#include <vector>

#include "common/error.hpp"

namespace iolab::test {

TempDir::TempDir(const std::string& tag) {
    const std::string pattern =
        (std::filesystem::temp_directory_path() / (tag + "-XXXXXX")).string();
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    if (::mkdtemp(name.data()) == nullptr) throw_sys("mkdtemp", pattern);
    path = name.data();
}

TempDir::~TempDir() {
    std::error_code ec;  // nothing to do about a failure in a destructor
    std::filesystem::remove_all(path, ec);
}

std::string TempDir::file(const std::string& name) const {
    return (path / name).string();
}

}  // namespace iolab::test
