// scripts/compare-multiplexing.sh --quick against the real servers and
// loadgen: it completes, and its CSV holds one row per server and point with
// figures that could only come from a real run.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> out;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ','))
        out.push_back(cell);
    if (!line.empty() && line.back() == ',') out.emplace_back();
    return out;
}

// The CSV as rows of header -> value.
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p) {
    std::ifstream in(p);
    REQUIRE(in.good());
    std::string line;
    REQUIRE(std::getline(in, line));
    std::vector<std::string> header = split(line);
    std::vector<std::map<std::string, std::string>> rows;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::vector<std::string> cells = split(line);
        REQUIRE(cells.size() == header.size());
        std::map<std::string, std::string> row;
        for (std::size_t i = 0; i < header.size(); ++i)
            row[header[i]] = cells[i];
        rows.push_back(std::move(row));
    }
    return rows;
}

}  // namespace

TEST_CASE("compare-multiplexing.sh --quick: a CSV row per server and point", "[compare]") {
    TempDir out("compare-test");
    std::vector<std::string> servers = {"echo-select", "echo-poll", "echo-epoll",
                                        "echo-epoll--edge"};
    if (fs::exists(bin("echo-uring"))) {
        servers.push_back("echo-uring--simple");  // echo-uring --simple
        servers.push_back("echo-uring");
    }
    std::string list;
    for (const auto& s : servers)
        list += (list.empty() ? "" : " ") + s;
    // 1,100 idle connections: past FD_SETSIZE, so echo-select must be capped.
    RunResult r = run(
        {"/bin/bash", std::string(IOLAB_SOURCE_DIR) + "/scripts/compare-multiplexing.sh", "--quick",
         "--idle", "0,1100", "--duration", "0.5", "--active", "10", "--servers", list,
         "--build-dir", fs::path(IOLAB_BIN_DIR).parent_path().string(), "--out", out.path.string()},
        240s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto rows = read_csv(out.path / "multiplexing.csv");
    REQUIRE(rows.size() == servers.size() * 2);
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& row : rows) {
        INFO(row.at("server") << " idle " << row.at("idle_asked"));
        seen.insert({row.at("server"), row.at("idle_asked")});
        CHECK(row.at("errors") == "0");
        CHECK(row.at("active") == "10");
        CHECK(std::stod(row.at("requests_per_s")) > 100);
        CHECK(std::stod(row.at("p50_us")) > 0);
        CHECK(std::stod(row.at("p99_us")) >= std::stod(row.at("p50_us")));
        CHECK(std::stod(row.at("cpu_us_per_request")) > 0);
        CHECK(std::stod(row.at("rss_kib")) > 0);
        // Bytes of RSS per idle connection: only where there are idle ones,
        // and bounded (a server's growth is at most its whole RSS).
        if (row.at("idle_asked") == "0") {
            CHECK(row.at("rss_bytes_per_idle").empty());
        } else {
            REQUIRE_FALSE(row.at("rss_bytes_per_idle").empty());
            CHECK(std::stod(row.at("rss_bytes_per_idle")) * std::stod(row.at("idle")) <=
                  std::stod(row.at("rss_kib")) * 1024);
        }
        if (row.at("server") == "echo-select" && row.at("idle_asked") == "1100") {
            CHECK(row.at("capped") == "1");
            CHECK(std::stoi(row.at("idle")) < 1024);
        } else {
            CHECK(row.at("capped") == "0");
            CHECK(row.at("idle") == row.at("idle_asked"));
        }
    }
    for (const auto& s : servers) {
        CHECK(seen.count({s, "0"}) == 1);
        CHECK(seen.count({s, "1100"}) == 1);
    }
    std::ifstream md(out.path / "multiplexing.md");
    std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
    CHECK(text.find("| echo-epoll | 1100 |") != std::string::npos);
    CHECK(text.find("| B/idle |") != std::string::npos);
    CHECK(text.find("Errors over all points and repeats: 0.") != std::string::npos);
    if (run({"/bin/sh", "-c", "command -v gnuplot"}, 10s).exit_code == 0) {
        for (const char* f :
             {"multiplexing-rps.png", "multiplexing-p99.svg", "multiplexing-cpu.png"})
            CHECK(fs::file_size(out.path / f) > 1000);
    }
}

TEST_CASE("compare-multiplexing.sh writes under the build directory unless --out says otherwise",
          "[compare]") {
    // A fake build directory: its bin/ links to the real programs.
    TempDir build("compare-test");
    fs::create_directory_symlink(IOLAB_BIN_DIR, build.path / "bin");
    const fs::path results = fs::path(IOLAB_SOURCE_DIR) / "results" / "multiplexing.csv";
    std::error_code ec;
    const auto before = fs::last_write_time(results, ec);
    RunResult r =
        run({"/bin/bash", std::string(IOLAB_SOURCE_DIR) + "/scripts/compare-multiplexing.sh",
             "--quick", "--idle", "0", "--duration", "0.3", "--active", "5", "--servers",
             "echo-epoll", "--no-plots", "--build-dir", build.path.string()},
            120s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(fs::exists(build.path / "compare-multiplexing" / "multiplexing.csv"));
    CHECK(fs::exists(build.path / "compare-multiplexing" / "multiplexing.md"));
    if (!ec) CHECK(fs::last_write_time(results) == before);  // the committed results untouched

    auto bad = run({"/bin/bash", std::string(IOLAB_SOURCE_DIR) + "/scripts/compare-multiplexing.sh",
                    "--active", "0"},
                   20s);
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.rfind("compare-multiplexing: ", 0) == 0);
}

// Lab 03's last step: a student's own server beside the references.
// --server adds to the list (here a working server under its own name, and
// one with an option, as the comma form); each gets its rows in the CSV
// and the table, after the references; a --server that is not built is an
// error, not a silent omission.
TEST_CASE("compare-multiplexing.sh --server puts another server beside the list", "[compare]") {
    TempDir out("compare-test");
    const std::string script = std::string(IOLAB_SOURCE_DIR) + "/scripts/compare-multiplexing.sh";
    const std::string build = fs::path(IOLAB_BIN_DIR).parent_path().string();
    RunResult r =
        run({"/bin/bash",  script,        "--quick",    "--idle",   "0",
             "--duration", "0.3",         "--active",   "5",        "--servers",
             "echo-poll",  "--server",    "echo-epoll", "--server", "echo-select,echo-epoll--edge",
             "--no-plots", "--build-dir", build,        "--out",    out.path.string()},
            180s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto rows = read_csv(out.path / "multiplexing.csv");
    std::vector<std::string> order;
    for (const auto& row : rows) {
        order.push_back(row.at("server"));
        CHECK(row.at("errors") == "0");
        CHECK(std::stod(row.at("requests_per_s")) > 100);
    }
    CHECK(order ==
          std::vector<std::string>{"echo-poll", "echo-epoll", "echo-select", "echo-epoll--edge"});
    std::ifstream md(out.path / "multiplexing.md");
    std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
    for (const char* s : {"| echo-poll | 0 |", "| echo-epoll | 0 |", "| echo-select | 0 |",
                          "| echo-epoll--edge | 0 |"})
        CHECK(text.find(s) != std::string::npos);

    // Not built: exit 3, naming it. A bad name: usage error.
    auto missing = run({"/bin/bash", script, "--quick", "--server", "ex-no-such-server",
                        "--build-dir", build, "--out", out.path.string()},
                       30s);
    CHECK(missing.exit_code == 3);
    CHECK(missing.err.find("ex-no-such-server") != std::string::npos);
    auto bad = run({"/bin/bash", script, "--server", "two words"}, 30s);
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.rfind("compare-multiplexing: --server", 0) == 0);
}
