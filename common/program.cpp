#include "common/program.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "common/error.hpp"

namespace iolab {

std::string version_line(std::string_view program) {
    return std::string(program) + " iolab " + IOLAB_VERSION;
}

void setup_program(CLI::App& app, std::string_view program, std::string_view exit_codes) {
    app.name(std::string(program));
    app.set_version_flag("--version", version_line(program));
    if (!exit_codes.empty()) app.footer(std::string(exit_codes));
}

namespace {

// CLI11 messages may span lines ("...\nRun with --help for more information.");
// the suite's convention is one line.
std::string one_line(std::string text) {
    for (char& c : text)
        if (c == '\n' || c == '\r') c = ' ';
    while (!text.empty() && text.back() == ' ')
        text.pop_back();
    return text;
}

}  // namespace

const CLI::Validator& finite_number() {
    static const CLI::Validator v(
        [](std::string& text) -> std::string {
            errno = 0;
            char* end = nullptr;
            const double value = std::strtod(text.c_str(), &end);
            if (text.empty() || end != text.c_str() + text.size()) return {};  // not a number
            if (!std::isfinite(value)) return text + " is not a finite number";
            return {};
        },
        "", "finite");
    return v;
}

void require_finite_numbers(CLI::App& app) {
    for (CLI::Option* o : app.get_options())
        if (o->get_type_name().rfind("FLOAT", 0) == 0) o->check(finite_number());
    for (CLI::App* sub : app.get_subcommands({}))
        require_finite_numbers(*sub);
}

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
    require_finite_numbers(app);
    try {
        app.parse(argc, argv);
        return std::nullopt;
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::CallForAllHelp&) {
        std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
        return 0;
    } catch (const CLI::CallForVersion&) {
        std::puts(version_line(app.get_name()).c_str());
        return 0;
    } catch (const CLI::ParseError& e) {
        return usage_error(app, e.what());
    }
}

int usage_error(const CLI::App& app, std::string_view message) {
    std::string name = app.get_name().empty() ? std::string("iolab") : app.get_name();
    log_line(name + ": " + one_line(std::string(message)));
    return kExitUsage;
}

uint64_t raise_nofile_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) throw_sys("getrlimit", "RLIMIT_NOFILE");
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) throw_sys("setrlimit", "RLIMIT_NOFILE");
    }
    return rl.rlim_cur;
}

int guarded_main(std::string_view program, const std::function<int()>& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        log_line(std::string(program) + ": " + e.what());
        return 1;
    }
}

}  // namespace iolab
