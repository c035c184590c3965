// Test support for the HTTP programs: http-testd started on --port 0, the body
// pattern it serves, http-get run to completion, and raw requests over a
// socket for what no client of the suite sends.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace iolab::test {

// The body of /bytes/N (and the decoded body of /chunked/N), as http-testd
// documents it: byte i is (j * 31 + j / 251) & 0xFF with j = i % 65521.
std::string testd_pattern(std::size_t n);

// http-testd --port 0 [extra...].
struct Testd {
    ServerProcess proc;
    explicit Testd(std::vector<std::string> extra = {});
    [[nodiscard]] std::string url(const std::string& path) const;
    // The body of GET /stats (JSON), fetched with http-get.
    std::string stats_text();
};

RunResult http_get(std::vector<std::string> args,
                   std::chrono::milliseconds limit = std::chrono::seconds(20));

// Sends `request` on a new connection to 127.0.0.1:port and reads until the
// server closes (or `limit` passes). `closed` says whether the close came.
struct RawReply {
    std::string bytes;
    bool closed = false;
};
RawReply raw_exchange(uint16_t port, const std::string& request,
                      std::chrono::milliseconds limit = std::chrono::seconds(5));

}  // namespace iolab::test
