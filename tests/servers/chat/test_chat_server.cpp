// Integration tests of chat-server and chat-client: the real binaries over loopback.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/io.hpp"
#include "common/socket.hpp"
#include "tests/support/asan.hpp"
#include "tests/support/echo_client.hpp"
#include "tests/support/process.hpp"

using namespace iolab::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A chat participant over a real socket: send lines, read lines with timeouts.
class LineClient {
  public:
    explicit LineClient(uint16_t port) : fd_(connect_local(port)) {}
    explicit LineClient(iolab::Fd fd) : fd_(std::move(fd)) {}

    [[nodiscard]] int fd() const { return fd_.get(); }

    void send(std::string_view text) {
        iolab::IoResult r = iolab::write_all(fd_.get(), text);
        if (!r.ok()) throw std::runtime_error(r.describe("write", "chat client"));
    }

    // The next line, or nullopt at timeout / end of stream / error.
    std::optional<std::string> line(std::chrono::milliseconds timeout) {
        auto deadline = Clock::now() + timeout;
        for (;;) {
            if (auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string l = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return l;
            }
            if (eof_) return std::nullopt;
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd p{fd_.get(), POLLIN, 0};
            int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return std::nullopt;
            char b[16384];
            ssize_t r = ::read(fd_.get(), b, sizeof b);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                eof_ = true;
                err_ = r < 0 ? errno : 0;
                continue;
            }
            buf_.append(b, static_cast<std::size_t>(r));
        }
    }

    // Reads lines until one satisfies `pred`; returns it, or nullopt. Lines
    // passed over are kept in `seen` if given.
    std::optional<std::string> until(const std::function<bool(const std::string&)>& pred,
                                     std::chrono::milliseconds timeout,
                                     std::vector<std::string>* seen = nullptr) {
        auto deadline = Clock::now() + timeout;
        for (;;) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto l = line(left);
            if (!l) return std::nullopt;
            if (pred(*l)) return l;
            if (seen) seen->push_back(*l);
        }
    }
    std::optional<std::string> until_line(const std::string& want,
                                          std::chrono::milliseconds timeout = 10s) {
        return until([&](const std::string& l) { return l == want; }, timeout);
    }

    // True once the server has closed the connection (all lines before it read).
    bool closed(std::chrono::milliseconds timeout, std::vector<std::string>* rest = nullptr) {
        auto deadline = Clock::now() + timeout;
        while (!eof_ || buf_.find('\n') != std::string::npos) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return false;
            auto l = line(left);
            if (l && rest) rest->push_back(*l);
            if (!l && !eof_) return false;
        }
        return true;
    }

    // The welcome line, and the guest nick parsed from it.
    std::string welcome() {
        auto l = line(10s);
        if (!l || !l->starts_with("*** welcome to iolab chat, "))
            throw std::runtime_error("no welcome line: " + l.value_or("(none)"));
        std::string rest = l->substr(std::string("*** welcome to iolab chat, ").size());
        return rest.substr(0, rest.find('.'));
    }

  private:
    iolab::Fd fd_;
    std::string buf_;
    bool eof_ = false;
    int err_ = 0;
};

std::vector<std::string> chat_argv(std::vector<std::string> extra) {
    std::vector<std::string> argv{bin("chat-server"), "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

}  // namespace

TEST_CASE("chat-server: 50 clients each get every other client's messages once, in order",
          "[chat][integration]") {
    ServerProcess server(chat_argv({"--rate-limit", "0"}));
    constexpr int kClients = 50;
    constexpr int kMessages = 20;
    std::vector<std::unique_ptr<LineClient>> clients;
    std::vector<std::string> nicks;
    // All join before anyone talks: once a client has its welcome line, it is
    // in the room (the server is one event loop: connect, welcome, join).
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(std::make_unique<LineClient>(server.port()));
        nicks.push_back(clients.back()->welcome());
    }
    REQUIRE(std::set<std::string>(nicks.begin(), nicks.end()).size() == kClients);

    // received[i][sender] = the sequence numbers client i saw from sender, in order.
    std::vector<std::map<std::string, std::vector<int>>> received(kClients);
    std::vector<std::string> errors(kClients);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i) {
        threads.emplace_back([&, i] {
            try {
                std::string batch;
                for (int m = 0; m < kMessages; ++m)
                    batch += "msg " + nicks[i] + " " + std::to_string(m) + "\n";
                clients[i]->send(batch);
                int want = (kClients - 1) * kMessages, got = 0;
                while (got < want) {
                    auto l = clients[i]->line(60s);
                    if (!l) {
                        errors[i] = "timed out after " + std::to_string(got) + " messages";
                        return;
                    }
                    if (!l->starts_with("<")) continue;  // notices
                    auto close = l->find("> msg ");
                    std::string sender = l->substr(1, close - 1);
                    std::string body = l->substr(close + 6);
                    auto sp = body.find(' ');
                    if (body.substr(0, sp) != sender) errors[i] = "mangled line: " + *l;
                    received[i][sender].push_back(std::stoi(body.substr(sp + 1)));
                    ++got;
                }
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (auto& t : threads)
        t.join();

    std::vector<int> in_order(kMessages);
    for (int m = 0; m < kMessages; ++m)
        in_order[m] = m;
    for (int i = 0; i < kClients; ++i) {
        INFO("client " << nicks[i] << ": " << errors[i]);
        CHECK(errors[i].empty());
        CHECK(received[i].count(nicks[i]) == 0);  // nothing of one's own comes back
        CHECK(received[i].size() == kClients - 1);
        for (auto& [sender, seqs] : received[i]) {
            INFO("from " << sender);
            CHECK(seqs == in_order);  // every message once, in the sender's order
        }
    }
    REQUIRE(server.stop(SIGTERM, 20s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s.has_value());
    CHECK(s->connections == kClients);
    CHECK(s->refused == 0);
}

TEST_CASE("chat-server: nicks, /who, /msg and rooms over real sockets", "[chat][integration]") {
    ServerProcess server(chat_argv({"-v"}));
    LineClient a(server.port()), b(server.port()), c(server.port());
    a.welcome();
    b.welcome();
    c.welcome();
    a.send("/nick alice\n");
    REQUIRE(a.until_line("*** you are now known as alice"));
    b.send("/nick ALICE\n");
    REQUIRE(b.until_line("error: nick ALICE is taken"));
    b.send("/nick bob\n");
    REQUIRE(b.until_line("*** you are now known as bob"));
    REQUIRE(c.until_line("*** guest1 is now known as alice"));
    REQUIRE(c.until_line("*** guest2 is now known as bob"));
    c.send("/who\n");
    REQUIRE(c.until_line("*** in lobby (3): alice bob guest3"));
    a.send("/msg bob just for you\n");
    REQUIRE(b.until_line("*alice* just for you"));
    REQUIRE(a.until_line("-> *bob* just for you"));
    a.send("/join den\n");
    REQUIRE(a.until_line("*** you are now in den with 0 others"));
    b.send("/join den\n");
    REQUIRE(a.until_line("*** bob joined den"));
    c.send("/rooms\n");
    REQUIRE(c.until_line("*** rooms (2): den(2) lobby(1)"));
    c.send("not for the den\n");
    b.send("in the den\n");
    REQUIRE(a.until_line("<bob> in the den"));
    // c's lobby message never reached the den: a's next line is b's /me.
    b.send("/me grins\n");
    auto next = a.line(10s);
    REQUIRE(next);
    CHECK(*next == "* bob grins");
    c.send("/nonsense\n");
    REQUIRE(c.until_line("error: unknown command /nonsense (/help lists the commands)"));
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    CHECK(server.err().find("nick guest1 -> alice") != std::string::npos);
    CHECK(server.err().find("move alice") != std::string::npos);
}

TEST_CASE("chat-server: an overlong line is dropped with an error, the connection stays",
          "[chat][integration]") {
    ServerProcess server(chat_argv({"--max-line", "100"}));
    LineClient a(server.port()), b(server.port());
    a.welcome();
    b.welcome();
    a.send(std::string(5000, 'x') + "\nafter the long one\n");
    REQUIRE(a.until_line("error: line longer than 100 bytes; it was dropped"));
    auto l = b.until([](const std::string& s) { return s.starts_with("<"); }, 10s);
    REQUIRE(l);
    CHECK(*l == "<guest1> after the long one");
    a.send(std::string(100, 'y') + "\r\n");
    l = b.until([](const std::string& s) { return s.starts_with("<"); }, 10s);
    REQUIRE(l);
    CHECK(*l == "<guest1> " + std::string(100, 'y'));
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}

// One scenario, kept whole (over 80 lines): its steps read as one story.
TEST_CASE("chat-server: a reader that never reads is cut off, the others carry on",
          "[chat][integration]") {
    // --sndbuf 16384: the kernel holds little for any client, so the server's
    // own queue (--max-queue 64 KiB) is what a stalled reader fills. --linger
    // 60: the cut-off reader's goodbye waits long enough for the test to come
    // back and read it.
    ServerProcess server(chat_argv({"--max-queue", "65536", "--sndbuf", "16384", "--rate-limit",
                                    "0", "--linger", "60", "-v"}));
    // A small receive buffer on the slow side too.
    iolab::Fd raw(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(raw.valid());
    int small = 4096;
    ::setsockopt(raw.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(server.port());
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(raw.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    LineClient slow(std::move(raw));
    slow.welcome();
    slow.send("/nick slow\n");
    REQUIRE(slow.until_line("*** you are now known as slow"));
    // From here on, slow reads nothing.

    LineClient talker(server.port());
    talker.welcome();
    constexpr int kFast = 2;
    std::vector<std::unique_ptr<LineClient>> fast;
    for (int i = 0; i < kFast; ++i) {
        fast.push_back(std::make_unique<LineClient>(server.port()));
        fast.back()->welcome();
    }

    // The talker sends batches of 50 lines (25 KB) and waits for both fast
    // readers to have all of them before the next: the fast ones never fall
    // behind, the slow one falls further behind with every batch.
    constexpr int kBatches = 40, kBatch = 50;  // 1 MB in all
    const std::string body(500, 'p');
    std::vector<std::atomic<int>> got(kFast);
    std::vector<std::atomic<bool>> saw_cut(kFast);
    std::atomic<bool> quit{false};
    std::vector<std::thread> readers;
    for (int i = 0; i < kFast; ++i) {
        readers.emplace_back([&, i] {
            while (!quit && got[i] < kBatches * kBatch) {
                auto l = fast[i]->line(200ms);
                if (!l) continue;
                if (l->starts_with("<guest2> ")) ++got[i];
                if (*l == "*** slow left lobby (too slow)") saw_cut[i] = true;
            }
        });
    }
    double worst_batch = 0;  // seconds from a batch's send to its last delivery
    bool stalled = false;
    for (int b = 0; b < kBatches && !stalled; ++b) {
        std::string batch;
        for (int n = 0; n < kBatch; ++n)
            batch += body + " " + std::to_string(b * kBatch + n) + "\n";
        auto sent = Clock::now();
        talker.send(batch);
        auto deadline = sent + 20s;
        for (int i = 0; i < kFast; ++i)
            while (got[i] < (b + 1) * kBatch) {
                if (Clock::now() > deadline) {
                    stalled = true;
                    break;
                }
                std::this_thread::sleep_for(1ms);
            }
        worst_batch =
            std::max(worst_batch, std::chrono::duration<double>(Clock::now() - sent).count());
    }
    quit = true;
    for (auto& t : readers)
        t.join();
    INFO("slowest batch: " << worst_batch << " s");
    REQUIRE_FALSE(stalled);  // no batch ever waited on the slow reader
    for (int i = 0; i < kFast; ++i) {
        CHECK(got[i] == kBatches * kBatch);
        CHECK(saw_cut[i]);
    }

    // Now the slow one reads: what was queued (at most the bound), then the
    // reason, then the end of the stream.
    std::vector<std::string> rest;
    REQUIRE(slow.closed(30s, &rest));
    REQUIRE_FALSE(rest.empty());
    CHECK(rest.back() ==
          "error: disconnected: you read too slowly (more than 65536 bytes of output waiting)");
    // It never got the whole conversation: it was cut off well before the end.
    CHECK(std::count_if(rest.begin(), rest.end(), [](const std::string& l) {
              return l.starts_with("<guest2> ");
          }) < kBatches * kBatch / 2);
    // The server is still fine.
    talker.send("/who\n");
    REQUIRE(talker.until_line("*** in lobby (3): guest2 guest3 guest4"));
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    CHECK(server.err().find("cut off slow 127.0.0.1:") != std::string::npos);
}

TEST_CASE("chat-server: abrupt disconnects (RST) disturb no one", "[chat][integration]") {
    ServerProcess server(chat_argv({"--rate-limit", "0"}));
    LineClient watcher(server.port());
    watcher.welcome();
    for (int i = 0; i < 20; ++i) {
        LineClient c(server.port());
        c.welcome();
        // Half a line, or a queue of unread output, then an RST.
        if (i % 2 == 0)
            c.send("half a li");
        else
            c.send("/help\n/who\n");
        linger lg{1, 0};
        ::setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }  // each closes here with SO_LINGER 0: an RST
    // The watcher sees every one leave, and the server still answers.
    int left = 0;
    while (left < 20) {
        auto l = watcher.until(
            [](const std::string& s) { return s.find(" left lobby (") != std::string::npos; }, 20s);
        REQUIRE(l);
        ++left;
    }
    watcher.send("/who\n");
    REQUIRE(watcher.until_line("*** in lobby (1): guest1"));
    LineClient late(server.port());
    CHECK(late.welcome() == "guest22");
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s);
    CHECK(s->connections == 22);
}

TEST_CASE("chat-server: server full gets a line, then the close", "[chat][integration]") {
    ServerProcess server(chat_argv({"--max-clients", "2"}));
    LineClient a(server.port()), b(server.port());
    a.welcome();
    b.welcome();
    LineClient c(server.port());
    auto l = c.line(10s);
    REQUIRE(l);
    CHECK(*l == "error: server full (2 clients); try again later");
    CHECK(c.closed(10s));
    // One leaves; there is room again.
    a.send("/quit\n");
    REQUIRE(a.until_line("*** bye, guest1"));
    REQUIRE(a.closed(10s));
    REQUIRE(b.until_line("*** guest1 left lobby (quit)"));
    LineClient d(server.port());
    CHECK(d.welcome() == "guest3");
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s);
    CHECK(s->connections == 3);
    CHECK(s->refused == 1);
}

TEST_CASE("chat-server: a 30-line paste arrives whole and in order, delayed to the rate",
          "[chat][integration]") {
    ServerProcess server(chat_argv({}));  // the default: 20 lines per second
    constexpr int kRate = 20, kLines = 30;
    LineClient a(server.port()), b(server.port());
    a.welcome();
    b.welcome();
    std::string paste;
    for (int i = 0; i < kLines; ++i)
        paste += "paste line " + std::to_string(i) + "\n";
    const auto sent = Clock::now();
    a.send(paste);
    std::vector<std::string> got;
    while (got.size() < kLines) {
        auto l = b.until([](const std::string& s) { return s.starts_with("<guest1> "); }, 10s);
        if (!l) break;
        got.push_back(*l);
    }
    const double took = std::chrono::duration<double>(Clock::now() - sent).count();
    std::fprintf(stderr, "paste: %zu of %d lines in %.3f s\n", got.size(), kLines, took);
    REQUIRE(got.size() == kLines);
    for (int i = 0; i < kLines; ++i)
        CHECK(got[std::size_t(i)] == "<guest1> paste line " + std::to_string(i));
    // The burst (one second's worth) goes at once, the last ten at the rate:
    // (30 - 20) / 20 = 0.5 s. Never faster than the rate, never later than
    // 30 / rate seconds plus a margin for a busy machine.
    CHECK(took >= 0.4);
    CHECK(took <= double(kLines) / kRate + 1.5);
    // The sender was told once, and nothing was refused.
    std::vector<std::string> notes;
    a.send("/quit\n");
    REQUIRE(a.closed(10s, &notes));
    CHECK(std::count(notes.begin(), notes.end(),
                     "*** flood control: more than 20 lines per second; your next lines are "
                     "delayed, not dropped") == 1);
    CHECK(std::none_of(notes.begin(), notes.end(),
                       [](const std::string& l) { return l.starts_with("error:"); }));
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}

// One scenario, kept whole (over 80 lines): its steps read as one story.
TEST_CASE("chat-server: a flood without end is held back, then cut off; others keep their pace",
          "[chat][integration]") {
    // The defaults: 20 lines per second, --max-input 262144. The flooder
    // sends 1,000 lines (100 KB) a second: its input piles up in the kernel
    // at about 98 KB/s and passes the bound after some 2.7 s.
    ServerProcess server(chat_argv({"-v"}));
    LineClient flooder(server.port()), speaker(server.port()), listener(server.port());
    flooder.welcome();
    speaker.welcome();
    listener.welcome();
    flooder.send("/nick flooder\n");
    REQUIRE(flooder.until_line("*** you are now known as flooder"));

    std::atomic<bool> stop{false};
    std::thread sender([&] {
        const auto end = Clock::now() + 40s;  // bounded, whatever happens
        const std::string pad(88, 'x');
        for (long i = 0; !stop && Clock::now() < end;) {
            std::string batch;
            for (int k = 0; k < 10; ++k, ++i) {
                char num[24];
                std::snprintf(num, sizeof num, "%06ld", i);
                batch += "flood " + std::string(num) + " " + pad + "\n";
            }
            try {
                flooder.send(batch);
            } catch (const std::exception&) {
                return;  // cut off and reset
            }
            std::this_thread::sleep_for(10ms);
        }
    });
    std::vector<std::string> flooder_got;
    bool flooder_closed = false;
    std::thread flood_reader([&] { flooder_closed = flooder.closed(60s, &flooder_got); });

    // The speaker says something every 100 ms; the listener times each one.
    std::vector<double> latency_ms;
    std::vector<long> flood_seen;  // sequence numbers of the flooder's lines, as delivered
    bool cut_seen = false;
    Clock::time_point cut_at{}, started = Clock::now();
    auto watch = [&](const std::string& l) {
        if (l.starts_with("<flooder> flood ")) flood_seen.push_back(std::stol(l.substr(16, 6)));
        if (l == "*** flooder left lobby (flooding)" && !cut_seen) {
            cut_seen = true;
            cut_at = Clock::now();
        }
    };
    for (int k = 0; k < 400; ++k) {                         // 40 s at most
        if (cut_seen && Clock::now() - cut_at > 1s) break;  // and a second after the cut
        const std::string msg = "ping " + std::to_string(k);
        const auto t0 = Clock::now();
        speaker.send(msg + "\n");
        auto l = listener.until(
            [&](const std::string& s) {
                watch(s);
                return s == "<guest2> " + msg;
            },
            10s);
        REQUIRE(l);
        latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        std::this_thread::sleep_for(100ms - std::min<Clock::duration>(Clock::now() - t0, 100ms));
    }
    stop = true;
    sender.join();
    flood_reader.join();
    while (auto l = listener.line(200ms))
        watch(*l);

    REQUIRE(cut_seen);
    const double cut_after = std::chrono::duration<double>(cut_at - started).count();
    std::sort(latency_ms.begin(), latency_ms.end());
    const double p50 = latency_ms[latency_ms.size() / 2], worst = latency_ms.back();
    std::fprintf(stderr,
                 "flood: cut after %.2f s, %zu flood lines delivered; victim latency over %zu "
                 "messages: p50 %.2f ms, max %.2f ms\n",
                 cut_after, flood_seen.size(), latency_ms.size(), p50, worst);
    // Nobody else waited on the flooder.
    CHECK(p50 < 50);
    CHECK(worst < 500);
    // What got through did so in order, none skipped, at the rate: the
    // burst of 20 plus 20 a second.
    REQUIRE(flood_seen.size() >= 20);
    for (std::size_t i = 0; i < flood_seen.size(); ++i)
        CHECK(flood_seen[i] == long(i));
    CHECK(double(flood_seen.size()) <= 20 + 20 * (cut_after + 0.5));
    // The flooder was told it is delayed, then why it was disconnected.
    CHECK(flooder_closed);
    CHECK(std::count(flooder_got.begin(), flooder_got.end(),
                     "*** flood control: more than 20 lines per second; your next lines are "
                     "delayed, not dropped") == 1);
    REQUIRE_FALSE(flooder_got.empty());
    CHECK(flooder_got.back() ==
          "error: disconnected: flooding (more than 262144 bytes of your input waiting at 20 "
          "lines per second)");
    speaker.send("/who\n");
    REQUIRE(speaker.until_line("*** in lobby (2): guest2 guest3"));
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
    CHECK(server.err().find("cut off flooder 127.0.0.1:") != std::string::npos);
}

TEST_CASE("chat-server: the idle timeout counts complete lines, not bytes", "[chat][integration]") {
    ServerProcess server(chat_argv({"--idle-timeout", "2"}));
    LineClient drip(server.port()), talker(server.port()), mute(server.port());
    drip.welcome();
    talker.welcome();
    mute.welcome();
    const auto start = Clock::now();
    // drip sends a byte every 0.3 s and never a newline; talker a line every
    // 0.5 s; mute nothing at all.
    std::optional<Clock::time_point> drip_cut, mute_cut;
    std::atomic<bool> quit{false};
    std::thread watcher([&] {
        while (!quit && !(drip_cut && mute_cut)) {
            if (!mute_cut && mute.line(10ms) == "*** disconnected: idle for 2 seconds")
                mute_cut = Clock::now();
            if (!drip_cut && drip.line(10ms) == "*** disconnected: idle for 2 seconds")
                drip_cut = Clock::now();
        }
    });
    bool drip_ok = true;
    for (int i = 0; i < 14 && Clock::now() - start < 6s; ++i) {  // about 4 s
        try {
            if (!drip_cut) drip.send("z");
        } catch (const std::exception&) {
            drip_ok = false;  // reset after the cut: fine, it was cut
        }
        if (i % 2 == 0) talker.send("still here\n");
        std::this_thread::sleep_for(300ms);
    }
    quit = true;
    watcher.join();
    INFO("drip still writable to the end: " << drip_ok);
    REQUIRE(drip_cut);
    REQUIRE(mute_cut);
    const double drip_s = std::chrono::duration<double>(*drip_cut - start).count();
    const double mute_s = std::chrono::duration<double>(*mute_cut - start).count();
    std::fprintf(stderr, "idle: drip cut after %.2f s, mute after %.2f s\n", drip_s, mute_s);
    CHECK(drip_s >= 1.9);
    CHECK(drip_s <= 4.0);
    CHECK(mute_s >= 1.9);
    CHECK(mute_s <= 4.0);
    // The talker, a line every 0.6 s, is still there.
    talker.send("/who\n");
    REQUIRE(talker.until_line("*** in lobby (1): guest2"));
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}

TEST_CASE("chat-server: SIGTERM tells every client, flushes, exits 0 with a summary",
          "[chat][integration]") {
    ServerProcess server(chat_argv({}));
    std::vector<std::unique_ptr<LineClient>> cs;
    for (int i = 0; i < 3; ++i) {
        cs.push_back(std::make_unique<LineClient>(server.port()));
        cs.back()->welcome();
    }
    cs[0]->send("hi\n");
    REQUIRE(cs[1]->until_line("<guest1> hi"));
    REQUIRE(::kill(server.pid(), SIGTERM) == 0);
    for (auto& c : cs) {
        REQUIRE(c->until_line("*** server shutting down"));
        CHECK(c->closed(10s));
    }
    REQUIRE(server.wait(10s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s);
    CHECK(s->connections == 3);
    CHECK(s->bytes_in == 3);
}

TEST_CASE("chat-client: piped stdin sends every line and prints the answers",
          "[chat][integration]") {
    ServerProcess server(chat_argv({}));
    LineClient watcher(server.port());
    watcher.welcome();
    char path[] = "/tmp/iolab-chat-input-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    std::string script = "/nick piper\n/who\nhello from a pipe\n/msg guest1 psst\n";
    REQUIRE(::write(fd, script.data(), script.size()) == ssize_t(script.size()));
    ::close(fd);
    auto r =
        run({"/bin/sh", "-c",
             bin("chat-client") + " 127.0.0.1:" + std::to_string(server.port()) + " < " + path},
            20s);
    ::unlink(path);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("*** welcome to iolab chat, guest2.") != std::string::npos);
    CHECK(r.out.find("*** you are now known as piper\n") != std::string::npos);
    CHECK(r.out.find("*** in lobby (2): guest1 piper\n") != std::string::npos);
    CHECK(r.out.find("-> *guest1* psst\n") != std::string::npos);
    REQUIRE(watcher.until_line("<piper> hello from a pipe"));
    REQUIRE(watcher.until_line("*piper* psst"));
    REQUIRE(watcher.until_line("*** piper left lobby (connection closed)"));

    // /quit: the server's goodbye is printed before the exit.
    auto q = run({"/bin/sh", "-c",
                  "printf '/quit done\\nignored\\n' | " + bin("chat-client") +
                      " 127.0.0.1:" + std::to_string(server.port())},
                 20s);
    CHECK(q.exit_code == 0);
    CHECK(q.out.find("*** bye, guest3\n") != std::string::npos);
    REQUIRE(server.stop(SIGTERM, 10s) == 0);
}

TEST_CASE("chat-client: errors name the call and the peer, exit non-zero", "[chat][integration]") {
    uint16_t port;
    {
        ServerProcess gone(chat_argv({}));
        port = gone.port();
        REQUIRE(gone.stop(SIGTERM, 10s) == 0);
    }
    auto r = run({bin("chat-client"), "127.0.0.1:" + std::to_string(port)}, 20s);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("connect 127.0.0.1:" + std::to_string(port) + ": Connection refused") !=
          std::string::npos);
    auto bad = run({bin("chat-client"), "nohostport"}, 10s);
    CHECK(bad.exit_code != 0);
    CHECK(bad.err.find("nohostport") != std::string::npos);
}

TEST_CASE("chat-server: server conventions (--version, bad flags, IPv6)", "[chat][integration]") {
    auto v = run({bin("chat-server"), "--version"}, 10s);
    CHECK(v.exit_code == 0);
    CHECK(v.out.find("iolab ") != std::string::npos);
    auto bad = run({bin("chat-server"), "--max-line", "1"}, 10s);
    CHECK(bad.exit_code != 0);
    CHECK(bad.err.find("--max-line") != std::string::npos);
    ServerProcess six(chat_argv({"--host", "::1"}));
    CHECK(six.host() == "::1");
    LineClient c(connect_local(six.port(), "::1"));
    CHECK(c.welcome() == "guest1");
    REQUIRE(six.stop(SIGINT, 10s) == 0);
}

namespace {

// Raises this process's descriptor limit to `want` (at most the hard limit);
// returns the soft limit now in force.
rlim_t raise_own_nofile(rlim_t want) {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = std::min(want, rl.rlim_max);
        ::setrlimit(RLIMIT_NOFILE, &rl);
        ::getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

// The numbers of the server's -v line "memory after N departures (1
// connections left): malloc in use A KiB, free but held B KiB; malloc_trim(0):
// RSS C -> D KiB", the k-th one (from 1) that ends a crowd's departure.
struct TrimLine {
    long in_use = -1, held = -1, rss_before = -1, rss_after = -1;
};
std::optional<TrimLine> trim_line(const std::string& err, int k) {
    const std::string mark = "(1 connections left): malloc in use ";
    std::size_t at = 0;
    for (int i = 0; i < k; ++i) {
        at = err.find(mark, at);
        if (at == std::string::npos) return std::nullopt;
        at += mark.size();
    }
    // Two forms: with "malloc_trim(0): RSS C -> D KiB", or "RSS C KiB, no trim
    // yet" when the last part of a departure came after a trim.
    TrimLine t;
    const char* p = err.c_str() + at;
    if (std::sscanf(p, "%ld KiB, free but held %ld KiB; malloc_trim(0): RSS %ld -> %ld", &t.in_use,
                    &t.held, &t.rss_before, &t.rss_after) == 4)
        return t;
    if (std::sscanf(p, "%ld KiB, free but held %ld KiB; RSS %ld KiB", &t.in_use, &t.held,
                    &t.rss_before) == 3) {
        t.rss_after = t.rss_before;
        return t;
    }
    return std::nullopt;
}

}  // namespace

// One scenario, kept whole (over 80 lines): its steps read as one story.
TEST_CASE("chat-server: memory comes back after 10 crowds of 2000 join and leave",
          "[chat][integration]") {
    constexpr int kClients = 2000, kCycles = 10;
    REQUIRE(raise_own_nofile(20000) >= kClients + 100);
    SpawnOptions so;
    so.nofile = 20000;
#if IOLAB_TEST_ASAN
    // Under AddressSanitizer the server's allocator is ASan's: freed blocks
    // wait in a quarantine (up to 256 MiB) to catch use-after-free, and
    // malloc_trim does nothing. With no quarantine, freed memory is reused
    // at once, so growth from crowd to crowd is still measured.
    std::string asan = "quarantine_size_mb=0";
    if (const char* old = std::getenv("ASAN_OPTIONS")) asan = std::string(old) + ":" + asan;
    ::setenv("ASAN_OPTIONS", asan.c_str(), 1);
#endif
    ServerProcess server(chat_argv({"-v"}), so);
    LineClient watcher(server.port());
    watcher.welcome();
    watcher.send("/join watch\n");  // out of the lobby: no join/leave notices to read
    REQUIRE(watcher.until_line("*** you are now in watch with 0 others"));
    const long idle = rss_kib(server.pid());

    std::vector<long> rss(kCycles + 1, -1), peak(kCycles + 1, -1);
    std::vector<TrimLine> trims(kCycles + 1);
    for (int cycle = 1; cycle <= kCycles; ++cycle) {
        {
            std::vector<std::unique_ptr<LineClient>> crowd;
            crowd.reserve(kClients);
            for (int i = 0; i < kClients; ++i)
                crowd.push_back(std::make_unique<LineClient>(server.port()));
            for (auto& c : crowd)
                c->welcome();  // in the lobby now
            peak[cycle] = rss_kib(server.pid());
        }  // all close here (with unread notices: an RST from most)
        // Everyone has left once the lobby is empty...
        const auto deadline = Clock::now() + 30s;
        bool empty = false;
        while (!empty && Clock::now() < deadline) {
            watcher.send("/rooms\n");
            auto l =
                watcher.until([](const std::string& s) { return s.starts_with("*** rooms"); }, 10s);
            REQUIRE(l);
            empty = l->find("lobby(0)") != std::string::npos;
            if (!empty) std::this_thread::sleep_for(50ms);
        }
        REQUIRE(empty);
        // ...and the server has looked at its memory once the burst was over.
        std::optional<TrimLine> t;
        while (!(t = trim_line(server.err(), cycle)) && Clock::now() < deadline)
            std::this_thread::sleep_for(50ms);
        REQUIRE(t);
        trims[cycle] = *t;
        rss[cycle] = rss_kib(server.pid());
    }
    std::fprintf(stderr, "memory: idle RSS %ld KiB\n", idle);
    for (int c = 1; c <= kCycles; ++c)
        std::fprintf(stderr,
                     "memory: cycle %2d  RSS with %d clients %ld KiB, after they left %ld KiB "
                     "(malloc in use %ld KiB, free but held %ld KiB, RSS before malloc_trim %ld "
                     "KiB)\n",
                     c, kClients, peak[c], rss[c], trims[c].in_use, trims[c].held,
                     trims[c].rss_before);
    // No growth from cycle to cycle: the goal is 4 MiB between cycles 2 and 10.
    // Under ASan its allocator's RSS swings by some 13 MiB from crowd to crowd
    // with no trend (measured: 48-61 MiB); there the bound is looser, and
    // LeakSanitizer checks the server for leaks exactly when it exits (the
    // exit code 0 checked below).
    constexpr long kBoundKib = IOLAB_TEST_ASAN ? 32 * 1024 : 4 * 1024;
    CHECK(std::labs(rss[kCycles] - rss[2]) <= kBoundKib);
    // What the program holds is back to its idle size (not a leak)...
    CHECK(trims[kCycles].in_use - trims[2].in_use < 1024);
#if !IOLAB_TEST_ASAN
    // ...and what malloc held for the next crowd went back to the kernel
    // (glibc's malloc_trim; ASan's allocator keeps what it has mapped).
    CHECK(rss[kCycles] < peak[kCycles]);
#endif
    REQUIRE(server.stop(SIGTERM, 20s) == 0);
    auto s = parse_summary(server.out());
    REQUIRE(s);
    CHECK(s->connections == 1 + kClients * kCycles);
}
