// The program conventions: usage errors are one line and exit 2, --version
// names the program, --help ends with the exit codes.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "common/program.hpp"
#include "common/server.hpp"

namespace {

struct Parsed {
    std::optional<int> rc;
    std::string out;  // what went to stdout
    std::string err;  // what went to stderr
};

// Captures stdout/stderr of one parse_command_line call through pipes.
std::string drain(int fd) {
    std::string s;
    std::array<char, 4096> buf{};
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0)
        s.append(buf.data(), static_cast<std::size_t>(n));
    return s;
}

Parsed parse(CLI::App& app, std::vector<std::string> args) {
    std::vector<char*> argv;
    std::string prog = "prog";
    argv.push_back(prog.data());
    for (auto& a : args)
        argv.push_back(a.data());
    int out_pipe[2], err_pipe[2];
    REQUIRE(::pipe(out_pipe) == 0);
    REQUIRE(::pipe(err_pipe) == 0);
    std::fflush(stdout);
    int saved_out = ::dup(STDOUT_FILENO), saved_err = ::dup(STDERR_FILENO);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    Parsed p;
    p.rc = iolab::parse_command_line(app, static_cast<int>(argv.size()), argv.data());
    std::fflush(stdout);
    ::dup2(saved_out, STDOUT_FILENO);
    ::dup2(saved_err, STDERR_FILENO);
    ::close(saved_out);
    ::close(saved_err);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    p.out = drain(out_pipe[0]);
    p.err = drain(err_pipe[0]);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return p;
}

}  // namespace

TEST_CASE("usage errors are one line naming the program and exit 2", "[program]") {
    for (std::vector<std::string> args :
         {std::vector<std::string>{"--bogus"}, {"extra"}, {"--port", "70000"}, {"--port", "x"}}) {
        CLI::App app{"test"};
        iolab::ServerOptions opts;
        iolab::add_server_options(app, "echo-test", opts);
        Parsed p = parse(app, args);
        INFO(args[0]);
        REQUIRE(p.rc.has_value());
        CHECK(*p.rc == 2);
        CHECK(p.out.empty());
        CHECK(p.err.rfind("echo-test: ", 0) == 0);
        CHECK(std::count(p.err.begin(), p.err.end(), '\n') == 1);
    }
}

TEST_CASE("version and help exit 0 with what they promise", "[program]") {
    {
        CLI::App app{"test"};
        iolab::ServerOptions opts;
        iolab::add_server_options(app, "echo-test", opts);
        Parsed p = parse(app, {"--version"});
        REQUIRE(p.rc == 0);
        CHECK(p.out == std::string("echo-test iolab ") + IOLAB_VERSION + "\n");
    }
    {
        CLI::App app{"test"};
        iolab::ServerOptions opts;
        iolab::add_server_options(app, "echo-test", opts);
        Parsed p = parse(app, {"--help"});
        REQUIRE(p.rc == 0);
        CHECK(p.out.find("Exit codes:") != std::string::npos);
        CHECK(p.out.find("--max-clients") != std::string::npos);
    }
    {
        CLI::App app{"test"};
        iolab::ServerOptions opts;
        iolab::add_server_options(app, "echo-test", opts);
        Parsed p = parse(app, {"--port", "65535"});
        CHECK_FALSE(p.rc.has_value());
        CHECK(opts.port == 65535);
    }
}

TEST_CASE("a floating-point option takes finite numbers only, in subcommands too", "[program]") {
    for (const char* bad : {"nan", "NaN", "-nan", "inf", "-Infinity", "1e999"}) {
        CLI::App app{"test"};
        iolab::setup_program(app, "float-test", "Exit codes:\n  2  usage error");
        double rate = 1, limit = 1;
        float ratio = 1;
        app.add_option("--rate", rate)->check(CLI::Range(0.0, 1e6));
        app.add_option("--ratio", ratio);
        CLI::App* sub = app.add_subcommand("sub", "a subcommand");
        sub->add_option("--limit", limit);
        for (std::vector<std::string> args :
             {std::vector<std::string>{"--rate", bad}, {"--ratio", bad}, {"sub", "--limit", bad}}) {
            INFO(args[0] << " " << args.back());
            Parsed p = parse(app, args);
            REQUIRE(p.rc.has_value());
            CHECK(*p.rc == 2);
            CHECK(p.err.rfind("float-test: ", 0) == 0);
            CHECK(std::count(p.err.begin(), p.err.end(), '\n') == 1);
            CHECK(p.out.empty());
        }
        CHECK(rate == 1);
        CHECK(limit == 1);
    }
    // Finite numbers pass, and so do the options' own errors.
    CLI::App app{"test"};
    iolab::setup_program(app, "float-test", "");
    double rate = 0;
    app.add_option("--rate", rate);
    Parsed p = parse(app, {"--rate", "2.5e3"});
    CHECK_FALSE(p.rc.has_value());
    CHECK(rate == 2500);
    std::string text = "nan";
    CHECK(iolab::finite_number()(text) == "nan is not a finite number");
    text = "0.25";
    CHECK(iolab::finite_number()(text).empty());
    text = "abc";  // left to the option's conversion
    CHECK(iolab::finite_number()(text).empty());
}
