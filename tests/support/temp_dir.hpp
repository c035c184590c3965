// A fresh directory under the system's temporary directory (mkdtemp), removed
// with everything in it when the TempDir goes out of scope.
#pragma once

#include <filesystem>
#include <string>

namespace iolab::test {

struct TempDir {
    std::filesystem::path path;
    // The directory's name starts with `tag` ("soak-test", "loadgen-test").
    explicit TempDir(const std::string& tag = "iolab-test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    // path / name, as a string (for command lines).
    [[nodiscard]] std::string file(const std::string& name) const;
};

}  // namespace iolab::test
