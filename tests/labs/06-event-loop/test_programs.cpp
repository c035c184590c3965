// labs/06-event-loop: the programs, started for real — loop-echo on the shared
// echo fixture, loop-fetch and loop-crawl against http-testd, loop-demo.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;

IOLAB_ECHO_FIXTURE_CASES("loop-echo", (EchoServerSpec{"loop-echo", {}}))
IOLAB_ECHO_FIXTURE_CASES("loop-echo --out-limit 4096",
                         (EchoServerSpec{"loop-echo", {"--out-limit", "4096"}}))
