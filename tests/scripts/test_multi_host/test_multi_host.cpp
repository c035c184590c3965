// scripts/multi-host.sh --hosts 2: two loadgen namespaces against one
// echo-epoll namespace over a bridge; every connection comes up, nothing
// fails, and the merged report is the sum of the two hosts' reports,
// recomputed here from the JSON files the script kept.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& p) {
    std::ifstream in(p);
    REQUIRE(in.good());
    return json::parse(in);
}

// Bucket index -> count of one histogram of a report.
std::map<int64_t, uint64_t> buckets(const json& report, const char* name) {
    std::map<int64_t, uint64_t> out;
    for (const auto& b : report.at("histograms").at(name).at("buckets"))
        out[b.at(0).get<int64_t>()] += b.at(2).get<uint64_t>();
    return out;
}

}  // namespace

TEST_CASE("multi-host.sh with two namespaces merges their reports exactly", "[scripts][netns]") {
    if (::geteuid() != 0) {
        WARN("SKIPPED: multi-host.sh needs root to create network namespaces");
        return;
    }
    TempDir out("multi-host-test");
    const int conns = 200;
    RunResult r =
        run({"/bin/bash", std::string(IOLAB_SOURCE_DIR) + "/scripts/multi-host.sh", "--build-dir",
             fs::path(IOLAB_BIN_DIR).parent_path().string(), "--hosts", "2", "--connections",
             std::to_string(conns), "--duration", "3", "--out", out.path.string()},
            120s);
    INFO(r.out << r.err);
    if (r.exit_code == 4) {  // the script's "this machine cannot run it"
        WARN("SKIPPED: " << r.err);
        return;
    }
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("merge check: the merge equals the sum of the 2 hosts exactly") !=
          std::string::npos);

    json h1 = read_json(out.path / "host-1.json");
    json h2 = read_json(out.path / "host-2.json");
    json merged = read_json(out.path / "merged.json");
    for (const json* h : {&h1, &h2}) {
        CHECK(h->at("max_open").get<int>() == conns);
        CHECK(h->at("errors_total").get<uint64_t>() == 0);
        CHECK(h->at("requests").get<uint64_t>() > 0);
        CHECK(h->at("targets").at(0).get<std::string>().rfind("198.18.0.1:", 0) == 0);
    }
    CHECK(merged.at("runs").get<int>() == 2);
    for (const char* key : {"connections", "requests", "bytes_in", "bytes_out", "connects"})
        CHECK(merged.at(key).get<uint64_t>() ==
              h1.at(key).get<uint64_t>() + h2.at(key).get<uint64_t>());
    CHECK(merged.at("requests_per_s").get<double>() ==
          Approx(h1.at("requests_per_s").get<double>() + h2.at("requests_per_s").get<double>()));
    for (const char* name : {"latency", "latency_uncorrected", "connect"}) {
        INFO(name);
        std::map<int64_t, uint64_t> want = buckets(h1, name);
        for (const auto& [i, c] : buckets(h2, name))
            want[i] += c;
        CHECK(buckets(merged, name) == want);
    }
    // Every namespace the script made is gone.
    RunResult ns = run({"/bin/sh", "-c", "ip netns list"}, 10s);
    CHECK(ns.out.find("iolab-mh") == std::string::npos);
}
