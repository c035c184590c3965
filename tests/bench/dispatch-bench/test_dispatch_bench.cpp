// dispatch-bench on a tiny sweep: the JSON it writes holds every backend, raw
// and libevent, with sane figures, and the points it cannot run are skipped
// with a note instead of crashing.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A scratch file removed when the test ends.
struct TempPath {
    std::filesystem::path path;
    explicit TempPath(const std::string& stem)
        : path(std::filesystem::temp_directory_path() /
               (stem + "-" + std::to_string(::getpid()) + ".json")) {}
    ~TempPath() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
    }
};

json read_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    REQUIRE(in.good());
    return json::parse(in);
}

const json* find_point(const json& doc, const std::string& backend, const std::string& lib,
                       std::size_t fds, std::size_t active) {
    for (const json& r : doc.at("results"))
        if (r.at("backend") == backend && r.at("library") == lib && r.at("fds") == fds &&
            r.at("active") == active)
            return &r;
    return nullptr;
}

}  // namespace

TEST_CASE("dispatch-bench: a tiny sweep yields valid JSON for every backend", "[compare]") {
    TempPath out("dispatch-bench-test");
    RunResult r = run({bin("dispatch-bench"), "--fds", "16,40", "--active", "1,4", "--writes", "50",
                       "--runs", "3", "--json", out.path.string()},
                      120s);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json doc = read_json(out.path);
    CHECK(doc.at("tool") == "dispatch-bench");
    CHECK(doc.at("machine").at("rlimit_nofile").get<uint64_t>() > 0);
    CHECK(doc.at("machine").at("fd_setsize") == 1024);
    const json& results = doc.at("results");
    // 3 mechanisms x {raw, libevent} x 2 fds x 2 active.
    REQUIRE(results.size() == 24);
    std::set<std::string> seen;
    for (const json& p : results) {
        INFO(p.dump());
        REQUIRE_FALSE(p.at("skipped").get<bool>());
        CHECK(p.at("failures") == 0);
        CHECK(p.at("completed_runs") == 3);
        const auto active = p.at("active").get<uint64_t>();
        // Every byte written (A to start, then W chained) is an event.
        CHECK(p.at("events_per_run").get<uint64_t>() == active + 50);
        // Each round handles at most A events, so there are at least (A+W)/A rounds.
        CHECK(p.at("rounds_per_run").get<double>() * static_cast<double>(active) >=
              static_cast<double>(active + 50));
        CHECK(p.at("us_per_round").get<double>() > 0);
        CHECK(p.at("us_per_event").get<double>() > 0);
        CHECK(p.at("us_per_round_min").get<double>() <= p.at("us_per_round").get<double>());
        CHECK(p.at("us_per_round").get<double>() <= p.at("us_per_round_max").get<double>());
        seen.insert(p.at("backend").get<std::string>() + "/" + p.at("library").get<std::string>());
    }
    CHECK(seen == std::set<std::string>{"select/raw", "select/libevent", "poll/raw",
                                        "poll/libevent", "epoll/raw", "epoll/libevent"});
}

TEST_CASE("dispatch-bench: select past FD_SETSIZE and fds past RLIMIT_NOFILE are skipped, noted",
          "[compare]") {
    TempPath out("dispatch-bench-skip");
    // The child gets a small descriptor limit, so 600 pairs (1,200 descriptors)
    // do not fit, while 520 pairs fit but put descriptors past 1023.
    RunResult r = run({bin("dispatch-bench"), "--fds", "520,600", "--active", "1", "--writes", "20",
                       "--runs", "1", "--json", out.path.string()},
                      120s, SpawnOptions{1200, true});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json doc = read_json(out.path);
    CHECK(doc.at("machine").at("rlimit_nofile") == 1200);
    for (const char* lib : {"raw", "libevent"}) {
        const json* sel = find_point(doc, "select", lib, 520, 1);
        REQUIRE(sel != nullptr);
        CHECK(sel->at("skipped").get<bool>());
        CHECK(sel->at("note").get<std::string>().find("FD_SETSIZE") != std::string::npos);
        for (const char* b : {"poll", "epoll"}) {
            const json* ok = find_point(doc, b, lib, 520, 1);
            REQUIRE(ok != nullptr);
            CHECK_FALSE(ok->at("skipped").get<bool>());
            CHECK(ok->at("us_per_round").get<double>() > 0);
        }
        for (const char* b : {"select", "poll", "epoll"}) {
            const json* big = find_point(doc, b, lib, 600, 1);
            REQUIRE(big != nullptr);
            CHECK(big->at("skipped").get<bool>());
            CHECK(big->at("note").get<std::string>().find("RLIMIT_NOFILE") != std::string::npos);
        }
    }
}

TEST_CASE("dispatch-bench: bad arguments are refused", "[compare]") {
    CHECK(run({bin("dispatch-bench"), "--backend", "kqueue"}, 30s).exit_code != 0);
    CHECK(run({bin("dispatch-bench"), "--active", "0"}, 30s).exit_code != 0);
    CHECK(run({bin("dispatch-bench"), "--writes", "5", "--rounds", "5"}, 30s).exit_code != 0);
}
