// scripts/check-labs.sh against its fixture labs/00-selftest: every exercise
// whose id starts with "pass" passes and every one starting with "fail" fails
// (a wrong range, a missing line, a forbidden line, a wrong ratio, a non-zero
// exit, a timeout, no prediction, a patch that does not apply, a write=1
// exercise whose check also passes without the student's code), the closing
// count matches, the exit code is 1, and servers the blocks started are gone.
// labs-bad holds sheets the checker must refuse before running anything.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(IOLAB_SOURCE_DIR) + "/scripts/check-labs.sh";
const std::string kFixture = std::string(IOLAB_SOURCE_DIR) + "/tests/scripts/test_check_labs/labs";
const std::string kBadFixture =
    std::string(IOLAB_SOURCE_DIR) + "/tests/scripts/test_check_labs/labs-bad";
const std::string kLintFixture =
    std::string(IOLAB_SOURCE_DIR) + "/tests/scripts/test_check_labs/labs-lint";
const std::string kWalkFixture =
    std::string(IOLAB_SOURCE_DIR) + "/tests/scripts/test_check_labs/labs-walk";
const std::string kBuild = fs::path(IOLAB_BIN_DIR).parent_path().string();

// exercise id -> its verdict line ("lab | id | predicted: … | observed: … | PASS").
std::map<std::string, std::string> verdicts(const std::string& out) {
    std::map<std::string, std::string> v;
    std::istringstream in(out);
    std::string line;
    const std::regex row(
        R"(^00-selftest \| ([a-z0-9-]+) \| predicted: .* \| observed: .* \| (PASS|FAIL)$)");
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_match(line, m, row)) v[m[1].str()] = line;
    }
    return v;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

TEST_CASE("check-labs passes true predictions and fails false ones", "[check-labs]") {
    TempDir scratch("check-labs-test");
    // --answer-key: the write=1 exercises prove their answer key (skeleton
    // fails, solution passes, each wrong answer fails); the working tree's
    // files, so that an uncommitted fixture is seen too.
    auto r = run({kScript, "--labs-dir", kFixture, "--build-dir", kBuild, "--scratch",
                  scratch.path.string(), "--answer-key", "--answer-key-tree", "worktree"},
                 150s);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    REQUIRE(r.exit_code == 1);
    auto v = verdicts(r.out);
    int pass = 0, fail = 0;
    for (const auto& [id, line] : v) {
        INFO(line);
        if (id.rfind("pass", 0) == 0) {
            CHECK(ends_with(line, "| PASS"));
            ++pass;
        } else {
            REQUIRE(id.rfind("fail", 0) == 0);
            CHECK(ends_with(line, "| FAIL"));
            ++fail;
        }
    }
    CHECK(pass == 8);
    CHECK(fail == 14);
    // 8 + 2 figures + 4 wrong answers caught passed; 14 + 3 figures + 1 wrong
    // answer the check let through + 1 unmarked number failed.
    CHECK(r.out.find("\n14 passed, 19 failed\n") != std::string::npos);
    // What the failures observed, so a FAIL is for the stated reason.
    CHECK(v["fail-range"].find("observed: value=5 |") != std::string::npos);
    CHECK(v["fail-exit"].find("exit 3") != std::string::npos);
    CHECK(v["fail-timeout"].find("timed out after 1s") != std::string::npos);
    CHECK(v["fail-solution-conflict"].find("patch does not apply") != std::string::npos);
    // write=1: the unpatched build fails the check, then the patched one passes.
    CHECK(v["pass-write"].find("observed: unpatched: FAIL as it must (answer=42); patched: "
                               "answer=43; wrong answers: 2 of 2 fail | PASS") !=
          std::string::npos);
    CHECK(v["fail-write-unpatched-passes"].find("unpatched: PASS but must FAIL (answer=42)") !=
          std::string::npos);
    // Wrong answers: each on a line of its own, with its Mistake sentence and
    // what its check said; fewer than two, or one that passes, fails the exercise.
    auto has_line = [&](const std::string& s) { return r.out.find(s) != std::string::npos; };
    CHECK(
        has_line("00-selftest | pass-write wrong/answer/one-short.patch | predicted: FAIL "
                 "(Mistake: counts one too few (41).) | observed: answer=41 | PASS\n"));
    CHECK(
        has_line("00-selftest | pass-write wrong/answer/one-over.patch | predicted: FAIL "
                 "(Mistake: counts one too many (44).) | observed: answer=44 | PASS\n"));
    CHECK(v["fail-write-weak"].find(
              "weak exercise: 1 wrong answer(s) in 00-selftest/wrong/answer-weak/, at least 2 "
              "needed | FAIL") != std::string::npos);
    CHECK(v["fail-write-wrong-passes"].find("wrong answers: 1 of 2 fail | FAIL") !=
          std::string::npos);
    CHECK(
        has_line("| fail-write-wrong-passes wrong/answer-soft/passes.patch | predicted: FAIL "
                 "(Mistake: a comment after the number, which the check does not see.) | "
                 "observed: answer=43 — the check PASSES a wrong answer | FAIL\n"));
    // A block killed by its timeout (SIGTERM ignored, so lab.sh's EXIT trap
    // never ran) leaves no temporary directory: TMPDIR was check-labs' own.
    CHECK(v["fail-timeout-cleanup"].find("timed out after 1s") != std::string::npos);
    std::smatch tm;
    REQUIRE(std::regex_search(r.err, tm, std::regex(R"(out: lab_tmp=(\S+))")));
    CHECK(tm[1].str().find("/iolab-lab.") != std::string::npos);
    CHECK(!fs::exists(tm[1].str()));
    CHECK(v["fail-inline-expect"].find("inline '# expect:' at " + kFixture +
                                       "/00-selftest/LAB.md:") != std::string::npos);
    // Figures quoted in the prose (format B): in range (also in another unit),
    // out of range, unknown exercise, unknown key; the observed value beside.
    auto has = [&](const std::string& s) { return r.out.find(s) != std::string::npos; };
    CHECK(has(
        "| predicted: '33–37 ms' within latency_ms in 30..40 | observed: latency_ms=35 | PASS\n"));
    CHECK(has(
        "| predicted: '0.035 s' within latency_ms in 30..40 | observed: latency_ms=35 | PASS\n"));
    CHECK(
        has("| predicted: '25 ms' within latency_ms in 30..40 | observed: quoted figure outside "
            "latency_ms in 30..40; latency_ms=35 | FAIL\n"));
    CHECK(
        has("no-such-exercise latency_ms | predicted: '12 ms' | observed: no exercise "
            "no-such-exercise | FAIL\n"));
    CHECK(has("observed: exercise pass-figure predicts no 'other_ms in LO..HI' | FAIL\n"));
    // The lint: a number with the measured unit and no marker fails its own
    // line; a figure marker or an input marker silences it.
    CHECK(
        has("00-selftest | lint LAB.md:304 | predicted: a marker on '36 ms' (exercise "
            "pass-figure measures latency_ms) | observed: none: mark it <!-- figure: "
            "pass-figure KEY --> (KEY one of latency_ms) or <!-- input --> (a flag's value, a "
            "constant of the code) | FAIL\n"));
    CHECK(r.out.find("marker on '33") == std::string::npos);
    CHECK(r.out.find("marker on '50 ms'") == std::string::npos);
    // The expect fence belongs to the block right before it, not to a later one.
    CHECK(v["fail-no-prediction"].find("predicted: (none)") != std::string::npos);
    // The server the pass-cleanup block left running was stopped with it.
    std::smatch m;
    REQUIRE(std::regex_search(r.out, m, std::regex(R"(left_running=([0-9]+))")));
    const pid_t pid = std::stoi(m[1].str());
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    CHECK(name != "echo-poll");
}

TEST_CASE("check-labs exits 0 when every selected exercise passes", "[check-labs]") {
    TempDir scratch("check-labs-test");
    auto r = run({kScript, "--labs-dir", kFixture, "--build-dir", kBuild, "--scratch",
                  scratch.path.string(), "--exercise", "pass-forms", "--exercise", "pass-solution"},
                 60s);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("\n2 passed, 0 failed\n") != std::string::npos);
}

TEST_CASE("check-labs runs a write=1 block on the student's own build", "[check-labs]") {
    // Without --answer-key the block runs on the working tree and its build
    // (the student's code, here the unpatched answer=42): it must PASS there,
    // so the skeleton FAILS and says what it saw; no scratch copy is made.
    TempDir scratch("check-labs-test");
    auto r = run({kScript, "--labs-dir", kFixture, "--build-dir", kBuild, "--scratch",
                  scratch.path.string(), "--exercise", "pass-write"},
                 60s);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    CHECK(r.exit_code == 1);
    auto v = verdicts(r.out);
    CHECK(v["pass-write"].find("| observed: answer=42 | FAIL") != std::string::npos);
    CHECK(r.out.find("wrong/") == std::string::npos);
    CHECK(r.out.find("\n0 passed, 1 failed\n") != std::string::npos);
    CHECK(!fs::exists(scratch.path / "src"));
}

TEST_CASE("check-labs refuses malformed sheets before running anything", "[check-labs]") {
    auto r = run({kScript, "--labs-dir", kBadFixture, "--build-dir", kBuild}, 20s);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("passed") == std::string::npos);
    CHECK(r.err.find("00-write-alone/LAB.md:5: exercise \"write-alone\": write=1 needs solution= "
                     "and targets=") != std::string::npos);
    // A malformed sheet outside --lab does not stop a run of other labs.
    auto other =
        run({kScript, "--labs-dir", kBadFixture, "--build-dir", kBuild, "--lab", "99"}, 20s);
    CHECK(other.exit_code == 2);
    CHECK(other.err.find("malformed") == std::string::npos);
    CHECK(other.err.find("no exercise found") != std::string::npos);
}

TEST_CASE("check-labs lists without running and refuses bad usage", "[check-labs]") {
    auto list = run({kScript, "--labs-dir", kFixture, "--list"}, 20s);
    CHECK(list.exit_code == 0);
    CHECK(list.out.find("00-selftest | fail-range | timeout=10s | predicted: value in 10..20") !=
          std::string::npos);
    CHECK(list.out.find("passed") == std::string::npos);
    CHECK(list.out.find("00-selftest | pass-write | timeout=10s solution=solutions/answer.patch "
                        "targets=check-labs-fixture write=1 points=1 | predicted: answer in "
                        "43..43") != std::string::npos);
    // --index: what grade.sh and handout.sh read (points 1 unless the header says).
    auto index = run({kScript, "--labs-dir", kFixture, "--index"}, 20s);
    CHECK(index.exit_code == 0);
    CHECK(index.out.find("00-selftest\tfail-write-wrong-passes\t10\tsolutions/answer-soft.patch\t"
                         "check-labs-fixture\t1\t3\t-\t") != std::string::npos);
    CHECK(index.out.find("00-selftest\tpass-forms\t10\t-\t-\t0\t-\t-\t") != std::string::npos);
    CHECK(list.out.find("| pass-figure latency_ms | quoted: 33–37 ms\n") != std::string::npos);
    auto bad = run({kScript, "--bogus"}, 20s);
    CHECK(bad.exit_code == 2);
    CHECK(bad.err == "check-labs: unknown argument '--bogus' (--help)\n");
}

TEST_CASE("check-labs --lint fails an unmarked number and accepts an input marker",
          "[check-labs]") {
    // The selftest sheet has one unmarked number (36 ms) beside marked ones.
    auto r = run({kScript, "--labs-dir", kFixture, "--lint"}, 20s);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("| lint LAB.md:304 | predicted: a marker on '36 ms' ") != std::string::npos);
    CHECK(r.out.find("\n1 unmarked number(s)\n") != std::string::npos);
    CHECK(r.out.find("passed") == std::string::npos);
    // The same sentences with the number marked as an input, or quoted as a
    // checked figure, pass; the markers are the only difference.
    auto marked = run({kScript, "--labs-dir", kLintFixture, "--lab", "00-marked", "--lint"}, 20s);
    INFO("stdout:\n" << marked.out << "\nstderr:\n" << marked.err);
    CHECK(marked.exit_code == 0);
    CHECK(marked.out == "0 unmarked number(s)\n");
    auto unmarked =
        run({kScript, "--labs-dir", kLintFixture, "--lab", "01-unmarked", "--lint"}, 20s);
    INFO("stdout:\n" << unmarked.out << "\nstderr:\n" << unmarked.err);
    CHECK(unmarked.exit_code == 1);
    CHECK(unmarked.out.find("01-unmarked | lint LAB.md:5 | predicted: a marker on '64 KiB' "
                            "(exercise sends measures rss_kib)") != std::string::npos);
    CHECK(unmarked.out.find("01-unmarked | lint LAB.md:6 | predicted: a marker on '120–130 KiB' "
                            "(exercise sends measures rss_kib)") != std::string::npos);
    CHECK(unmarked.out.find("\n2 unmarked number(s)\n") != std::string::npos);
}

TEST_CASE("check-labs --as-student pastes a sheet into one shell and finds what it leaves",
          "[check-labs]") {
    // 00-clean: two blocks, each starting a server through scripts/lab.sh and
    // leaving it to the shell's exit (the second `. scripts/lab.sh` must not
    // forget the first block's server); 01-leaky: a process started behind
    // lab.sh's back and a temporary file nobody removes.
    auto clean = run({kScript, "--labs-dir", kWalkFixture, "--build-dir", kBuild, "--lab",
                      "00-clean", "--as-student"},
                     90s);
    INFO("stdout:\n" << clean.out << "\nstderr:\n" << clean.err);
    CHECK(clean.exit_code == 0);
    CHECK(clean.out.find("00-clean | first | done in ") != std::string::npos);
    CHECK(clean.out.find("00-clean | second | done in ") != std::string::npos);
    CHECK(clean.out.find("00-clean | walk | PASS\n") != std::string::npos);
    auto leaky = run({kScript, "--labs-dir", kWalkFixture, "--build-dir", kBuild, "--lab",
                      "01-leaky", "--as-student"},
                     90s);
    INFO("stdout:\n" << leaky.out << "\nstderr:\n" << leaky.err);
    CHECK(leaky.exit_code == 1);
    CHECK(leaky.out.find("01-leaky | walk | FAIL: ") != std::string::npos);
    CHECK(leaky.out.find("still running: pid ") != std::string::npos);
    CHECK(leaky.out.find(" sleep 97") != std::string::npos);
    CHECK(leaky.out.find("left in TMPDIR: leaky-walk.") != std::string::npos);
    // The walk killed what it found.
    std::smatch m;
    REQUIRE(std::regex_search(leaky.out, m, std::regex(R"(still running: pid ([0-9]+))")));
    CHECK(::kill(std::stoi(m[1].str()), 0) == -1);
}
