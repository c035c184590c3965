// Every program of the suite follows the same command-line conventions
// (common/program.hpp): a usage error is ONE line "NAME: what is wrong" on
// stderr and exit code 2; --version prints "NAME iolab X.Y.Z"; --help exits 0
// and ends with the program's exit codes. The list of programs comes from the
// build (every iolab_add_program), so a new program is checked without edits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using iolab::test::bin;
using iolab::test::run;

namespace {

std::vector<std::string> programs() {
    std::vector<std::string> names;
    std::stringstream list(IOLAB_PROGRAM_LIST);
    std::string name;
    while (std::getline(list, name, ','))
        if (!name.empty()) names.push_back(name);
    return names;
}

std::size_t lines(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST_CASE("every program: an unknown option is one line naming it and exit 2", "[conventions]") {
    const auto names = programs();
    REQUIRE(names.size() >= 15);
    for (const auto& name : names) {
        INFO(name);
        auto r = run({bin(name), "--bogus"}, 20s);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind(name + ": ", 0) == 0);
        CHECK(lines(r.err) == 1);
    }
}

TEST_CASE("every program: --version prints NAME iolab X.Y.Z", "[conventions]") {
    for (const auto& name : programs()) {
        INFO(name);
        auto r = run({bin(name), "--version"}, 20s);
        CHECK(r.exit_code == 0);
        CHECK(r.out == name + " iolab " + IOLAB_VERSION + "\n");
    }
}

TEST_CASE("every program: --help exits 0 and lists its exit codes", "[conventions]") {
    for (const auto& name : programs()) {
        INFO(name);
        auto r = run({bin(name), "--help"}, 20s);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("Exit codes") != std::string::npos);
        CHECK(r.out.find("2") != std::string::npos);
    }
}

namespace {

// The long names of the options --help lists with the type FLOAT (CLI11's
// name for a double or a float): "  -d,--duration FLOAT ..." gives --duration.
std::vector<std::string> float_options(const std::string& help) {
    std::vector<std::string> names;
    std::istringstream in(help);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string flags, type;
        if (!(words >> flags >> type) || flags[0] != '-' || type.rfind("FLOAT", 0) != 0) continue;
        std::stringstream each(flags);
        std::string name;
        while (std::getline(each, name, ','))
            if (name.rfind("--", 0) == 0) names.push_back(name);
    }
    return names;
}

}  // namespace

TEST_CASE("every program: a floating-point option refuses nan and inf in one line, exit 2",
          "[conventions]") {
    std::size_t checked = 0;
    for (const auto& name : programs()) {
        auto help = run({bin(name), "--help"}, 20s);
        for (const auto& option : float_options(help.out)) {
            for (const char* bad : {"nan", "inf"}) {
                INFO(name << " " << option << " " << bad);
                auto r = run({bin(name), option, bad}, 10s);
                CHECK(r.exit_code == 2);
                CHECK(r.err.rfind(name + ": ", 0) == 0);
                CHECK(lines(r.err) == 1);
                CHECK(r.err.find(option) != std::string::npos);
                CHECK(r.out.empty());
            }
            ++checked;
        }
    }
    // chat-server --rate-limit, loadgen --rate --duration --ramp --warmup
    // --timeout --busy-poll, and more: the list above is not empty.
    CHECK(checked >= 7);
}

TEST_CASE("every program: --help cites no issue of the project's tracker", "[conventions]") {
    // A reader has the program, not the tracker: "(issue 20)" tells nothing.
    const std::regex tracker(R"(\b[Ii]ssues? ?#?[0-9]+)");
    for (const auto& name : programs()) {
        INFO(name);
        auto r = run({bin(name), "--help"}, 20s);
        std::smatch m;
        const bool cited = std::regex_search(r.out, m, tracker);
        INFO((cited ? m.str() : std::string()));
        CHECK_FALSE(cited);
    }
}
