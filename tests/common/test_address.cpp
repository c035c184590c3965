#include <netinet/in.h>

#include <catch2/catch.hpp>

#include "common/address.hpp"

using namespace iolab;

TEST_CASE("parse_host_port accepts IPv4, names and bracketed IPv6", "[address]") {
    auto a = parse_host_port("127.0.0.1:9007");
    CHECK(a.host == "127.0.0.1");
    CHECK(a.port == 9007);
    auto b = parse_host_port("[::1]:80");
    CHECK(b.host == "::1");
    CHECK(b.port == 80);
    CHECK(b.to_string() == "[::1]:80");
    auto c = parse_host_port("localhost:0");
    CHECK(c.host == "localhost");
    CHECK(c.port == 0);
    CHECK(parse_host_port("[fe80::1:2]:65535").port == 65535);
}

TEST_CASE("parse_host_port rejects bad addresses with a message naming the problem", "[address]") {
    using Catch::Matchers::Contains;
    CHECK_THROWS_WITH(parse_host_port("127.0.0.1"), Contains("missing port"));
    CHECK_THROWS_WITH(parse_host_port("127.0.0.1:"), Contains("invalid port ''"));
    CHECK_THROWS_WITH(parse_host_port("127.0.0.1:70000"), Contains("invalid port '70000'"));
    CHECK_THROWS_WITH(parse_host_port("127.0.0.1:-1"), Contains("invalid port"));
    CHECK_THROWS_WITH(parse_host_port("127.0.0.1:80x"), Contains("invalid port '80x'"));
    CHECK_THROWS_WITH(parse_host_port("::1:80"), Contains("needs brackets"));
    CHECK_THROWS_WITH(parse_host_port("[::1:80"), Contains("missing ']'"));
    CHECK_THROWS_WITH(parse_host_port("[::1]80"), Contains("missing port"));
    CHECK_THROWS_WITH(parse_host_port(":80"), Contains("missing host"));
    CHECK_THROWS_WITH(parse_host_port(""), Contains("empty address"));
    CHECK_THROWS_AS(parse_host_port("a:b"), AddressError);
}

TEST_CASE("SockAddr prints IPv4 and IPv6 back", "[address]") {
    auto v4 = SockAddr::from_numeric("127.0.0.1", 9007);
    CHECK(v4.family() == AF_INET);
    CHECK(v4.to_string() == "127.0.0.1:9007");
    CHECK(v4.port() == 9007);
    auto v6 = SockAddr::from_numeric("[::1]", 443);
    CHECK(v6.family() == AF_INET6);
    CHECK(v6.to_string() == "[::1]:443");
    CHECK(v6.host() == "::1");
    CHECK_THROWS_AS(SockAddr::from_numeric("localhost", 1), AddressError);
    CHECK_THROWS_AS(SockAddr::from_numeric("256.0.0.1", 1), AddressError);
}

TEST_CASE("resolve finds loopback for IPv4, IPv6 and localhost", "[address]") {
    auto v4 = resolve("127.0.0.1", 80);
    REQUIRE(v4.size() == 1);
    CHECK(v4[0].to_string() == "127.0.0.1:80");
    auto v6 = resolve("::1", 80);
    REQUIRE(v6.size() == 1);
    CHECK(v6[0].to_string() == "[::1]:80");
    auto local = resolve("localhost", 8080);
    REQUIRE_FALSE(local.empty());
    for (const auto& a : local)
        CHECK(a.port() == 8080);
}

TEST_CASE("resolve reports a name that does not exist", "[address]") {
    CHECK_THROWS_WITH(resolve("no.such.host.invalid", 80),
                      Catch::Matchers::StartsWith("resolve no.such.host.invalid: "));
}
