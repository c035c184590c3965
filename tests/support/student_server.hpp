// Test support for the write-it-yourself servers (ex-epoll, ex-select,
// ex-threaded): before the reference integration cases run on a student's
// program, a quick look that fails in seconds, naming the likely cause,
// where those cases would wait out their timeouts one by one.
#pragma once

#include <string>
#include <vector>

namespace iolab::test {

// What to tell the student when a step of the quick look fails.
struct StudentHints {
    std::string file;       // the student's file, e.g. "labs/03-multiplexing/ex_epoll.cpp"
    std::string no_echo;    // the first client got no echo
    std::string reused_fd;  // a second client, after the first left, got none
    std::string no_stop;    // SIGTERM did not end it
};

// Starts argv (a server with --port 0; -v is added) and checks, each step
// bounded by a few seconds: a client's line is echoed; after it leaves, a
// second client's line is echoed too (the kernel gives it the same
// descriptor number); SIGTERM ends the server with exit 0. A failed step
// ends the test (Catch2 FAIL) with what happened, the hint, and the
// server's stderr.
void require_basic_echo(const std::vector<std::string>& argv, const StudentHints& hints);

}  // namespace iolab::test
