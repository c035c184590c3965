// scripts/soak.sh: a 30-second soak of every built server meets every goal,
// and a server that misses one (no clean exit on SIGTERM) fails the run.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/asan.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(IOLAB_SOURCE_DIR) + "/scripts/soak.sh";

// The table's rows: server -> its whitespace-separated cells (the summary
// line is the cells from the eighth on).
std::map<std::string, std::vector<std::string>> table(const std::string& out) {
    std::map<std::string, std::vector<std::string>> rows;
    std::istringstream in(out);
    std::string line;
    bool in_table = false;
    while (std::getline(in, line)) {
        if (line.rfind("server ", 0) == 0) {
            in_table = true;
            continue;
        }
        if (!in_table || line.empty() || line[0] == '-' || line[0] == ' ') continue;
        if (line.rfind("goals missed", 0) == 0 || line.rfind("every goal", 0) == 0) break;
        std::istringstream cells(line);
        std::vector<std::string> v;
        std::string c;
        while (cells >> c)
            v.push_back(c);
        if (v.size() >= 8) rows[v[0]] = v;
    }
    return rows;
}

}  // namespace

TEST_CASE("soak.sh --seconds 30: every built server, no errors, nothing lost, flat, clean exit",
          "[soak]") {
    TempDir out("soak-test-all");
    // Under AddressSanitizer RSS is the sanitizer's allocator (quarantine,
    // shadow memory), not the server's: 15-65 MiB of growth in 30 s in one
    // run. There the flatness bound is widened to 96 MiB; the default preset
    // checks the real bound (10% or 1 MiB).
    RunResult r = run({"/bin/bash", kScript, "--seconds", "30", "--build-dir",
                       fs::path(IOLAB_BIN_DIR).parent_path().string(), "--out", out.path.string(),
                       "--rss-slack-kib", IOLAB_TEST_ASAN ? "98304" : "1024"},
                      220s);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("every goal met") != std::string::npos);
    auto rows = table(r.out);
    std::vector<std::string> servers;
    for (const char* s :
         {"echo-threaded", "echo-nonblocking", "echo-select", "echo-poll", "echo-epoll",
          "echo-sigio", "echo-aio", "echo-uring", "loop-echo", "chat-server", "http-testd"})
        if (fs::exists(bin(s))) servers.push_back(s);
    REQUIRE(servers.size() >= 3);  // the test DEPENDS on more than that
    for (const auto& s : servers) {
        INFO(s);
        REQUIRE(rows.count(s) == 1);
        const auto& v = rows.at(s);
        // 30 s at 200 requests/s (echo, http) or 2 talkers x 5/s to 19 (chat).
        CHECK(std::stol(v[1]) > 1000);
        CHECK(v[2] == "0");  // errors
        CHECK(v[3] == "0");  // lost
        CHECK(v[6] == "0");  // exit status on SIGTERM
        CHECK(v[7] == "summary:");
        // The server saw the hostile clients too: far more connections than
        // the 4 (or 20) well-behaved ones.
        REQUIRE(v.size() > 8);
        CHECK(v[8].rfind("connections=", 0) == 0);
        CHECK(std::stol(v[8].substr(12)) > 50);
    }
    // The CSV: a row a second per server, with real figures.
    std::ifstream csv(out.path / "soak.csv");
    std::string line;
    REQUIRE(std::getline(csv, line));
    CHECK(line == "t_s,server,pid,fds,rss_kb,cpu_pct");
    std::map<std::string, int> samples;
    while (std::getline(csv, line)) {
        std::vector<std::string> c;
        std::istringstream cells(line);
        std::string cell;
        while (std::getline(cells, cell, ','))
            c.push_back(cell);
        REQUIRE(c.size() == 6);
        CHECK(std::stoi(c[3]) >= 3);    // a listener and stdio at least
        CHECK(std::stol(c[4]) > 1000);  // KiB
        ++samples[c[1]];
    }
    for (const auto& s : servers)
        CHECK(samples[s] >= 30);
    if (run({"/bin/sh", "-c", "command -v gnuplot"}, 10s).exit_code == 0)
        CHECK(fs::file_size(out.path / "soak.png") > 5000);
}

TEST_CASE("soak.sh fails when a server misses a goal, and skips servers not built", "[soak]") {
    // A build directory whose bin/ holds loadgen, the real echo-epoll, and an
    // "echo-poll" that echoes but dies on SIGTERM with status 1 and no summary.
    TempDir build("soak-test-fake");
    fs::create_directories(build.path / "bin");
    fs::create_symlink(bin("loadgen"), build.path / "bin" / "loadgen");
    fs::create_symlink(bin("echo-epoll"), build.path / "bin" / "echo-epoll");
    {
        std::ofstream f(build.path / "bin" / "echo-poll");
        f << "#!/usr/bin/env python3\n"
             "import os, signal, socket, threading\n"
             "signal.signal(signal.SIGTERM, lambda *a: os._exit(1))\n"
             "s = socket.socket()\n"
             "s.bind(('127.0.0.1', 0))\n"
             "s.listen(64)\n"
             "print('listening on 127.0.0.1:%d' % s.getsockname()[1], flush=True)\n"
             "def serve(c):\n"
             "    try:\n"
             "        while d := c.recv(65536):\n"
             "            c.sendall(d)\n"
             "    except OSError:\n"
             "        pass\n"
             "    c.close()\n"
             "while True:\n"
             "    c, _ = s.accept()\n"
             "    threading.Thread(target=serve, args=(c,), daemon=True).start()\n";
    }
    fs::permissions(build.path / "bin" / "echo-poll", fs::perms::owner_all);
    RunResult r = run({"/bin/bash", kScript, "--seconds", "20", "--build-dir", build.path.string(),
                       "--out", (build.path / "out").string()},
                      200s);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("http-testd is not built") != std::string::npos);
    CHECK(r.out.find("echo-select is not built") != std::string::npos);
    CHECK(r.out.find("goals missed: echo-poll: exit") != std::string::npos);
    auto rows = table(r.out);
    CHECK(rows.size() == 2);
    REQUIRE(rows.count("echo-epoll") == 1);
    CHECK(rows.at("echo-epoll")[2] == "0");
    CHECK(rows.at("echo-epoll")[6] == "0");
    REQUIRE(rows.count("echo-poll") == 1);
    CHECK(rows.at("echo-poll")[6] == "1");
    CHECK(rows.at("echo-poll")[7] == "no");  // "no summary line"
}

TEST_CASE("soak.sh: a run shorter than 20 s is a usage error", "[soak]") {
    RunResult r = run({"/bin/bash", kScript, "--seconds", "5"}, 30s);
    CHECK(r.exit_code == 2);
    CHECK(r.err == "soak: the run must last at least 20 seconds, got 5\n");
}
