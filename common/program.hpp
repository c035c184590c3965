// The conventions every iolab program shares, servers and clients alike:
//   - the command line is parsed by CLI11 (this target is the only one that
//     links it); a usage error prints ONE line "PROGRAM: what is wrong" on
//     stderr and exits 2 — CLI11's own exit codes (105, 106, 109...) never leak;
//   - --help ends with the program's exit codes; --version prints
//     "PROGRAM iolab X.Y.Z";
//   - an exception escaping main becomes "PROGRAM: message" and exit 1;
//   - a floating-point option takes finite numbers only: CLI11 reads "nan"
//     and "inf" as doubles, and a NaN passes every range check (each
//     comparison with it is false). parse_command_line adds finite_number()
//     to every option CLI11 types as FLOAT, in every program.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/log.hpp"

namespace iolab {

// Exit code of every program for a usage error (bad option, bad value).
inline constexpr int kExitUsage = 2;

// "PROGRAM iolab X.Y.Z"
[[nodiscard]] std::string version_line(std::string_view program);

// Names the app `program` (used in usage errors and --help), adds --version
// and sets the --help footer to `exit_codes` (one line per code is best, e.g.
// "Exit codes:\n  0  ...\n  1  ...\n  2  usage error").
void setup_program(CLI::App& app, std::string_view program, std::string_view exit_codes);

// A validator that refuses a value which reads as a floating-point number
// but not a finite one ("nan", "inf", "1e999"): "VALUE is not a finite
// number". Anything else it leaves to the option's own conversion.
[[nodiscard]] const CLI::Validator& finite_number();

// Adds finite_number() to every option of `app` and its subcommands that
// CLI11 types as FLOAT (a double or a float); parse_command_line calls it.
void require_finite_numbers(CLI::App& app);

// Parses argv. Returns std::nullopt when the program should go on, or the exit
// code to return from main: 0 after --help/--version, 2 after a usage error
// (reported as one line "PROGRAM: message" on stderr).
[[nodiscard]] std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

// Returns a usage error: prints "PROGRAM: message" and gives kExitUsage, for
// checks CLI11 cannot express (options that do nothing in a mode, ...).
int usage_error(const CLI::App& app, std::string_view message);

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
uint64_t raise_nofile_limit();

// Runs `body` and turns an escaping exception into "PROGRAM: message" on stderr
// and exit code 1.
int guarded_main(std::string_view program, const std::function<int()>& body);

}  // namespace iolab

// Like CLI11_PARSE, with the suite's exit codes: return from main after
// --help, --version or a usage error.
#define IOLAB_PARSE(app, argc, argv)                                                          \
    do {                                                                                      \
        if (auto iolab_rc_ = ::iolab::parse_command_line(app, argc, argv)) return *iolab_rc_; \
    } while (false)
