// Unit tests of the chat logic (servers/chat/chat_core): a Hub driven with fake
// connections and a fake clock, no sockets.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "servers/chat/chat_core.hpp"

using namespace iolab::chat;
using namespace std::chrono_literals;

namespace {

// A connection that keeps what is sent to it. With `reading` off it behaves
// like a client that never reads: every byte stays queued.
struct FakeConn : Connection {
    std::string out;
    std::size_t pending = 0;
    bool reading = true;
    int closes = 0;
    std::size_t kernel = 0;  // bytes "in the kernel's receive queue", for max_input

    void send(std::string_view b) override {
        out.append(b);
        if (!reading) pending += b.size();
    }
    [[nodiscard]] std::size_t queued() const override { return pending; }
    void close() override { ++closes; }
    [[nodiscard]] std::size_t unread() const override { return kernel; }

    // The complete lines received since the last take().
    std::vector<std::string> take() {
        std::vector<std::string> lines;
        std::size_t start = 0;
        for (std::size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1)
            lines.push_back(out.substr(start, nl - start));
        out.erase(0, start);
        return lines;
    }
};

// A client of the hub: its fake connection and its session.
struct Client {
    FakeConn conn;
    Session* session = nullptr;
};

struct World {
    Limits limits;
    std::unique_ptr<Hub> hub;
    std::vector<std::unique_ptr<Client>> clients;
    Clock::time_point now = Clock::time_point{} + 1000s;
    std::vector<std::string> log;

    explicit World(Limits l = {}) : limits(l) {
        hub = std::make_unique<Hub>(limits, [this](std::string_view s) { log.emplace_back(s); });
    }
    Client& connect() {
        clients.push_back(std::make_unique<Client>());
        Client& c = *clients.back();
        c.session =
            hub->connect(c.conn, "127.0.0.1:" + std::to_string(40000 + clients.size()), now);
        return c;
    }
    void say(Client& c, std::string_view bytes) { hub->receive(*c.session, bytes, now); }
    void drain() {
        for (auto& c : clients)
            c->conn.take();
    }
};

bool contains(const std::vector<std::string>& lines, const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
}

}  // namespace

TEST_CASE("chat core: a new client is welcomed as a guest in the lobby", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    REQUIRE(a.session != nullptr);
    CHECK(a.session->nick() == "guest1");
    REQUIRE(a.session->room() != nullptr);
    CHECK(a.session->room()->name() == "lobby");
    auto lines = a.conn.take();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].starts_with("*** welcome to iolab chat, guest1."));
    CHECK(lines[0].find("with 0 others") != std::string::npos);

    Client& b = w.connect();
    CHECK(b.session->nick() == "guest2");
    CHECK(b.conn.take()[0].find("with 1 other.") != std::string::npos);
    CHECK(a.conn.take() == std::vector<std::string>{"*** guest2 joined lobby"});
    CHECK(w.hub->sessions() == 2);
}

TEST_CASE("chat core: a line goes to everyone else in the room, once", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    Client& b = w.connect();
    Client& c = w.connect();
    w.drain();
    w.say(a, "hello there\n");
    CHECK(a.conn.take().empty());  // no echo to the sender
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> hello there"});
    CHECK(c.conn.take() == std::vector<std::string>{"<guest1> hello there"});

    // Lines split across reads and "\r\n" endings.
    w.say(b, "part one, ");
    CHECK(a.conn.take().empty());
    w.say(b, "part two\r\nsecond\r");
    w.say(b, "\n");
    CHECK(a.conn.take() ==
          std::vector<std::string>{"<guest2> part one, part two", "<guest2> second"});
    // Blank lines mean nothing; "//" sends a leading slash.
    w.say(c, "\n  \r\n//not a command\n");
    CHECK(a.conn.take() == std::vector<std::string>{"<guest3> /not a command"});
}

TEST_CASE("chat core: /nick changes the nick, refuses collisions and bad names", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    w.say(a, "/nick alice\n");
    CHECK(a.conn.take() == std::vector<std::string>{"*** you are now known as alice"});
    CHECK(b.conn.take() == std::vector<std::string>{"*** guest1 is now known as alice"});
    CHECK(w.hub->find_nick("ALICE") == a.session);
    CHECK(w.hub->find_nick("guest1") == nullptr);

    w.say(b, "/nick Alice\n");  // nicks are unique regardless of case
    CHECK(b.conn.take() == std::vector<std::string>{"error: nick Alice is taken"});
    CHECK(b.session->nick() == "guest2");
    w.say(b, "/nick 1abc\n/nick a b\n/nick\n/nick abcdefghijklmnopq\n/nick ok_name-2\n");
    auto lines = b.conn.take();
    REQUIRE(lines.size() == 5);
    CHECK(lines[0].starts_with("error: invalid nick \"1abc\""));
    CHECK(lines[1] == "error: usage: /nick NAME");
    CHECK(lines[2] == "error: usage: /nick NAME");
    CHECK(lines[3].starts_with("error: invalid nick"));
    CHECK(lines[4] == "*** you are now known as ok_name-2");
    // A case change of one's own nick is allowed.
    w.say(a, "/nick ALICE\n");
    CHECK(a.session->nick() == "ALICE");
    // Guest nicks skip names that are taken.
    w.say(a, "/nick guest3\n");
    Client& c = w.connect();
    CHECK(c.session->nick() == "guest4");
}

TEST_CASE("chat core: /who, /rooms and /join", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    Client& b = w.connect();
    Client& c = w.connect();
    w.say(a, "/nick alice\n");
    w.say(b, "/nick bob\n");
    w.drain();
    w.say(c, "/who\n");
    CHECK(c.conn.take() == std::vector<std::string>{"*** in lobby (3): alice bob guest3"});

    w.say(a, "/join #games\n");
    CHECK(a.conn.take() == std::vector<std::string>{"*** you are now in games with 0 others"});
    CHECK(b.conn.take() == std::vector<std::string>{"*** alice left lobby (joined another room)"});
    w.say(b, "/join Games\n");
    CHECK(a.conn.take() == std::vector<std::string>{"*** bob joined games"});
    CHECK(b.conn.take() == std::vector<std::string>{"*** you are now in games with 1 other"});
    CHECK(c.conn.take().size() == 2);  // both left the lobby

    // Messages stay in their room.
    w.say(a, "in games\n");
    CHECK(b.conn.take() == std::vector<std::string>{"<alice> in games"});
    CHECK(c.conn.take().empty());

    w.say(c, "/rooms\n");
    CHECK(c.conn.take() == std::vector<std::string>{"*** rooms (2): games(2) lobby(1)"});
    w.say(b, "/join games\n");
    CHECK(b.conn.take() == std::vector<std::string>{"*** you are already in games"});
    w.say(b, "/join 9\n/join\n");
    auto errs = b.conn.take();
    REQUIRE(errs.size() == 2);
    CHECK(errs[0].starts_with("error: invalid room \"9\""));
    CHECK(errs[1] == "error: usage: /join ROOM");

    // An empty room goes away; the lobby never does.
    w.say(a, "/join lobby\n");
    w.say(b, "/join lobby\n");
    CHECK(w.hub->find_room("games") == nullptr);
    CHECK(w.hub->room_count() == 1);
    w.say(a, "/join x\n");
    w.say(b, "/join x\n");
    w.say(c, "/join x\n");
    CHECK(w.hub->find_room("lobby") != nullptr);
    CHECK(w.hub->find_room("lobby")->size() == 0);
}

TEST_CASE("chat core: /who wraps a long list over several lines", "[chat][unit]") {
    World w;
    for (int i = 0; i < 200; ++i)
        w.connect();
    Client& a = *w.clients[0];
    w.drain();
    w.say(a, "/who\n");
    auto lines = a.conn.take();
    REQUIRE(lines.size() > 1);
    std::size_t names = 0;
    for (const auto& l : lines) {
        CHECK(l.size() <= 420);
        CHECK(l.starts_with("***"));
        std::istringstream words(l);
        for (std::string word; words >> word;)
            names += word.starts_with("guest") ? 1 : 0;
    }
    CHECK(lines[0].starts_with("*** in lobby (200): "));
    CHECK(names == 200);
}

TEST_CASE("chat core: /msg and /me", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    Client& b = w.connect();
    Client& c = w.connect();
    w.say(b, "/nick bob\n");
    w.say(c, "/join elsewhere\n");
    w.drain();
    w.say(a, "/msg BOB psst, only you\n");
    CHECK(a.conn.take() == std::vector<std::string>{"-> *bob* psst, only you"});
    CHECK(b.conn.take() == std::vector<std::string>{"*guest1* psst, only you"});
    w.say(a, "/msg guest3 across rooms\n");
    CHECK(c.conn.take() == std::vector<std::string>{"*guest1* across rooms"});
    a.conn.take();
    w.say(a, "/msg nobody hi\n/msg bob\n/me\n");
    CHECK(a.conn.take() == std::vector<std::string>{"error: no such nick: nobody",
                                                    "error: usage: /msg NICK TEXT",
                                                    "error: usage: /me ACTION"});
    w.say(a, "/ME waves\n");
    CHECK(b.conn.take() == std::vector<std::string>{"* guest1 waves"});
    CHECK(a.conn.take().empty());
    CHECK(c.conn.take().empty());
}

TEST_CASE("chat core: /quit says goodbye, tells the room, frees the nick", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    Client& b = w.connect();
    w.say(a, "/nick alice\n");
    w.drain();
    w.say(a, "/quit see you\nthis line comes after the quit\n");
    CHECK(a.conn.take() == std::vector<std::string>{"*** bye, alice"});
    CHECK(a.conn.closes == 1);
    CHECK_FALSE(a.session->open());
    CHECK(b.conn.take() == std::vector<std::string>{"*** alice left lobby (quit: see you)"});
    CHECK(w.hub->find_nick("alice") == nullptr);
    // The I/O layer reports the close; the session is destroyed then.
    w.hub->disconnected(*a.session, "closed");
    CHECK(w.hub->sessions() == 1);
    CHECK(b.conn.take().empty());  // no second leave notice
    w.say(b, "/nick alice\n");
    CHECK(b.session->nick() == "alice");
}

TEST_CASE("chat core: unknown commands and bad text get an error line", "[chat][unit]") {
    World w;
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    w.say(a, "/frobnicate now\n");
    CHECK(a.conn.take() == std::vector<std::string>{
                               "error: unknown command /frobnicate (/help lists the commands)"});
    w.say(a, "bell\x07here\n");
    w.say(a, "bad \xff utf8\n");
    w.say(a, "esc \x1b[2J\n");
    auto errs = a.conn.take();
    REQUIRE(errs.size() == 3);
    CHECK(errs[0] == "error: line refused: control characters are not allowed");
    CHECK(errs[1] == "error: line refused: not valid UTF-8");
    CHECK(errs[2] == "error: line refused: control characters are not allowed");
    CHECK(b.conn.take().empty());
    w.say(a, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\ttab\n");
    CHECK(b.conn.take() ==
          std::vector<std::string>{"<guest1> caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\ttab"});
    w.say(a, "/help\n");
    auto help = a.conn.take();
    CHECK(help.size() > 5);
    CHECK(help.back().starts_with("*** limits: lines up to 4096 bytes"));
}

TEST_CASE("chat core: UTF-8 validation", "[chat][unit]") {
    CHECK(Hub::text_problem("plain ascii").empty());
    CHECK(Hub::text_problem("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80").empty());
    CHECK_FALSE(Hub::text_problem("\xc0\xaf").empty());          // overlong "/"
    CHECK_FALSE(Hub::text_problem("\xe0\x80\xaf").empty());      // overlong, 3 bytes
    CHECK_FALSE(Hub::text_problem("\xed\xa0\x80").empty());      // a surrogate
    CHECK_FALSE(Hub::text_problem("\xf4\x90\x80\x80").empty());  // past U+10FFFF
    CHECK_FALSE(Hub::text_problem("\xe2\x82").empty());          // truncated
    CHECK_FALSE(Hub::text_problem("\xc2\x9b").empty());          // C1 control (CSI)
    CHECK_FALSE(Hub::text_problem(std::string_view("a\0b", 3)).empty());
    CHECK(Hub::valid_nick("a"));
    CHECK(Hub::valid_nick("Zed_9-x"));
    CHECK_FALSE(Hub::valid_nick(""));
    CHECK_FALSE(Hub::valid_nick("_x"));
    CHECK_FALSE(Hub::valid_nick("caf\xc3\xa9"));
    CHECK_FALSE(Hub::valid_nick(std::string(17, 'a')));
    CHECK(Hub::valid_room(std::string(24, 'r')));
    CHECK_FALSE(Hub::valid_room(std::string(25, 'r')));
}

TEST_CASE("chat core: an overlong line is dropped with an error, the session goes on",
          "[chat][unit]") {
    Limits l;
    l.max_line = 64;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    w.say(a, std::string(50, 'x'));
    w.say(a, std::string(50, 'y'));  // now over 64 without a newline
    CHECK(a.conn.take() ==
          std::vector<std::string>{"error: line longer than 64 bytes; it was dropped"});
    w.say(a, std::string(1000, 'z') + "\nnext line\n");
    CHECK(a.conn.take().empty());  // the same overlong line: reported once
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> next line"});
    CHECK(a.session->open());
    w.say(a, std::string(64, 'k') + "\r\n");  // exactly the limit is fine
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> " + std::string(64, 'k')});
}

TEST_CASE("chat core: a reader past max_queue is cut off and nobody waits for it", "[chat][unit]") {
    Limits l;
    l.max_queue = 4096;
    l.rate_limit = 0;
    World w(l);
    Client& talker = w.connect();
    Client& slow = w.connect();
    Client& fast = w.connect();
    w.say(slow, "/nick slow\n");
    w.drain();
    slow.conn.reading = false;
    const std::string msg(100, 'm');
    int sent = 0;
    while (slow.session->open() && sent < 1000) {
        w.say(talker, msg + "\n");
        ++sent;
    }
    REQUIRE_FALSE(slow.session->open());
    CHECK(slow.conn.closes == 1);
    CHECK(w.hub->stats().cut_off == 1);
    // The queue stayed within the bound, plus the one line that says why.
    auto slow_lines = slow.conn.take();
    REQUIRE_FALSE(slow_lines.empty());
    CHECK(slow_lines.back() ==
          "error: disconnected: you read too slowly (more than 4096 bytes of output waiting)");
    CHECK(slow.conn.pending <= 4096 + slow_lines.back().size() + 1);
    // The fast reader got every message and the notice.
    auto fast_lines = fast.conn.take();
    CHECK(std::count(fast_lines.begin(), fast_lines.end(), "<guest1> " + msg) == sent);
    CHECK(contains(fast_lines, "*** slow left lobby (too slow)"));
    CHECK(w.hub->find_nick("slow") == nullptr);
    CHECK(contains(w.log, "cut off slow 127.0.0.1:40002: more than 4096 bytes of output queued"));
    // The talker goes on.
    w.say(talker, "after\n");
    CHECK(fast.conn.take() == std::vector<std::string>{"<guest1> after"});
    CHECK(slow.conn.take().empty());
    w.hub->disconnected(*slow.session, "closing timed out");
    CHECK(w.hub->sessions() == 2);
}

TEST_CASE("chat core: /who past one's own queue bound cuts oneself off", "[chat][unit]") {
    Limits l;
    l.max_queue = 1024;
    World w(l);
    for (int i = 0; i < 300; ++i)
        w.connect();
    Client& a = *w.clients[0];
    w.drain();
    a.conn.reading = false;
    w.say(a, "/who\n");
    CHECK_FALSE(a.session->open());
    CHECK(a.conn.closes == 1);
}

TEST_CASE("chat core: flood control delays lines past the rate, in order, drops none",
          "[chat][unit]") {
    Limits l;
    l.rate_limit = 5;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    std::string paste;
    for (int i = 0; i < 8; ++i)
        paste += "m" + std::to_string(i) + "\n";
    w.say(a, paste);
    auto got = b.conn.take();
    REQUIRE(got.size() == 5);  // the burst: one second's worth
    CHECK(got.back() == "<guest1> m4");
    CHECK(a.conn.take() ==
          std::vector<std::string>{"*** flood control: more than 5 lines per second; your next "
                                   "lines are delayed, not dropped"});
    CHECK(a.session->held());
    CHECK(a.session->backlog() == 9);  // "m5\nm6\nm7\n"
    CHECK(w.hub->stats().delayed == 1);

    // The next token is due 1/5 s later; before that, nothing moves.
    const auto due = w.hub->resume_at(*a.session);
    CHECK(due > w.now);
    CHECK(due - w.now <= 201ms);
    w.hub->resume(*a.session, due - 1ms);
    CHECK(b.conn.take().empty());
    w.now = due;
    w.hub->resume(*a.session, w.now);
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> m5"});
    // More input while held queues behind the held lines.
    w.say(a, "late\n");
    CHECK(b.conn.take().empty());
    w.now += 1s;  // four tokens: everything that waits goes, in order
    w.hub->resume(*a.session, w.now);
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> m6", "<guest1> m7", "<guest1> late"});
    CHECK_FALSE(a.session->held());
    CHECK(a.session->backlog() == 0);
    CHECK(a.conn.take().empty());  // one notice per hold, no more

    w.now += 10s;  // the bucket refills to the burst, not beyond
    for (int i = 0; i < 7; ++i)
        w.say(a, "x\n");
    CHECK(b.conn.take().size() == 5);
    CHECK(a.conn.take().size() == 1);  // a new hold, a new notice
    w.now += 1s;
    w.hub->resume(*a.session, w.now);
    CHECK(b.conn.take().size() == 2);
    CHECK(w.hub->stats().flooded == 0);
}

TEST_CASE("chat core: blank lines and an unfinished line cost no token", "[chat][unit]") {
    Limits l;
    l.rate_limit = 2;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    w.say(a, "\n\n\n\none\ntwo\nunfini");
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> one", "<guest1> two"});
    CHECK_FALSE(a.session->held());    // the partial line waits for its newline, not a token
    CHECK(a.session->backlog() == 6);  // "unfini", in the framer
    w.say(a, "shed\n");                // completes it: now it needs a token
    CHECK(a.session->held());
    w.now = w.hub->resume_at(*a.session);
    w.hub->resume(*a.session, w.now);
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> unfinished"});
}

TEST_CASE("chat core: a held client past max_input (ours plus the kernel's) is cut off",
          "[chat][unit]") {
    Limits l;
    l.rate_limit = 10;
    l.max_input = 10000;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    const std::string line(99, 'f');
    std::string chunk;
    for (int i = 0; i < 50; ++i)
        chunk += line + "\n";  // 5,000 bytes
    w.say(a, chunk);
    CHECK(b.conn.take().size() == 10);
    CHECK(a.session->held());
    CHECK(a.session->backlog() == 4000);
    // The kernel holds 6,000 bytes more: 10,000 is the bound, not past it.
    a.conn.kernel = 6000;
    w.now += 100ms;
    w.hub->resume(*a.session, w.now);
    CHECK(a.session->open());
    CHECK(b.conn.take().size() == 1);
    // Now the kernel's queue has grown past it.
    a.conn.kernel = 7000;
    w.now += 100ms;
    w.hub->resume(*a.session, w.now);
    CHECK_FALSE(a.session->open());
    CHECK(a.conn.closes == 1);
    auto goodbye = a.conn.take();
    REQUIRE_FALSE(goodbye.empty());
    CHECK(goodbye.back() ==
          "error: disconnected: flooding (more than 10000 bytes of your input waiting at 10 lines "
          "per second)");
    // The line due at this tick went out before the check; then the leave.
    CHECK(b.conn.take() ==
          std::vector<std::string>{"<guest1> " + line, "*** guest1 left lobby (flooding)"});
    CHECK(w.hub->stats().flooded == 1);
    CHECK(std::any_of(w.log.begin(), w.log.end(), [](const std::string& s) {
        return s.starts_with("cut off guest1 127.0.0.1:") && s.find("flooding") != s.npos;
    }));
    w.hub->disconnected(*a.session, "closed");
    CHECK(w.hub->sessions() == 1);
}

TEST_CASE("chat core: without reading, the core alone bounds its held input", "[chat][unit]") {
    // A caller that keeps handing bytes over while the session is held (the
    // fuzzer does; the server stops reading instead) still meets max_input.
    Limits l;
    l.rate_limit = 1;
    l.max_input = 8192;
    World w(l);
    Client& a = w.connect();
    w.drain();
    for (int i = 0; i < 1000 && a.session->open(); ++i)
        w.say(a, std::string(63, 'z') + "\n");
    CHECK_FALSE(a.session->open());
    CHECK(a.session->backlog() == 0);  // given back at the cut
    CHECK(w.hub->stats().flooded == 1);
}

TEST_CASE("chat core: the idle deadline moves with complete lines only", "[chat][unit]") {
    Limits l;
    l.idle_timeout = 30;
    World w(l);
    Client& a = w.connect();
    CHECK(w.hub->idle_deadline(*a.session) == w.now + 30s);
    w.now += 10s;
    w.say(a, "no newline yet");
    CHECK(w.hub->idle_deadline(*a.session) == w.now - 10s + 30s);
    w.now += 10s;
    w.say(a, "\n");  // the line is complete now (a blank line counts too)
    CHECK(w.hub->idle_deadline(*a.session) == w.now + 30s);
    CHECK(a.session->last_line() == w.now);
}

TEST_CASE("chat core: no flood control with rate_limit 0", "[chat][unit]") {
    Limits l;
    l.rate_limit = 0;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    std::string many;
    for (int i = 0; i < 1000; ++i)
        many += "line\n";
    w.say(a, many);
    CHECK(b.conn.take().size() == 1000);
    CHECK(a.conn.take().empty());
}

TEST_CASE("chat core: server full, idle, reset and shutdown", "[chat][unit]") {
    Limits l;
    l.max_clients = 2;
    l.idle_timeout = 30;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    Client& c = w.connect();
    CHECK(c.session == nullptr);
    CHECK(c.conn.take() ==
          std::vector<std::string>{"error: server full (2 clients); try again later"});
    CHECK(c.conn.closes == 1);
    CHECK(w.hub->stats().refused == 1);
    w.drain();

    w.hub->idle(*a.session);
    CHECK(a.conn.take() == std::vector<std::string>{"*** disconnected: idle for 30 seconds"});
    CHECK(a.conn.closes == 1);
    CHECK(b.conn.take() == std::vector<std::string>{"*** guest1 left lobby (idle)"});
    w.hub->disconnected(*a.session, "closed");

    Client& d = w.connect();  // a place is free again
    REQUIRE(d.session != nullptr);
    w.drain();
    w.hub->disconnected(*d.session, "Connection reset by peer");
    CHECK(b.conn.take() ==
          std::vector<std::string>{"*** guest3 left lobby (Connection reset by peer)"});
    CHECK(d.conn.closes == 0);  // the connection is gone already: no close()

    Client& e = w.connect();
    w.drain();
    w.hub->shutdown("server shutting down");
    CHECK(b.conn.take() == std::vector<std::string>{"*** server shutting down"});
    CHECK(e.conn.take() == std::vector<std::string>{"*** server shutting down"});
    CHECK(b.conn.closes == 1);
    CHECK(e.conn.closes == 1);
    Client& f = w.connect();  // nobody new while stopping
    CHECK(f.session == nullptr);
}

TEST_CASE("chat core: join/leave notices stop above notices_max", "[chat][unit]") {
    Limits l;
    l.notices_max = 3;
    World w(l);
    Client& a = w.connect();
    w.connect();
    w.connect();
    w.drain();
    w.connect();  // the room had 3: a notice
    CHECK(a.conn.take() == std::vector<std::string>{"*** guest4 joined lobby"});
    w.connect();  // the room had 4: none
    CHECK(a.conn.take().empty());
    w.say(*w.clients[4], "/nick eve\n");  // nick changes are always told
    CHECK(a.conn.take() == std::vector<std::string>{"*** guest5 is now known as eve"});
}

TEST_CASE("chat core: a fractional rate lets one line through every 1/rate seconds",
          "[chat][unit]") {
    // 0.5 lines a second: one line every 2 s. The bucket holds at least one
    // token (with 0.5 it would never reach one), and nothing is dropped.
    Limits l;
    l.rate_limit = 0.5;
    World w(l);
    Client& a = w.connect();
    Client& b = w.connect();
    w.drain();
    w.say(a, "one\ntwo\nthree\n");
    CHECK(b.conn.take() == std::vector<std::string>{"<guest1> one"});
    CHECK(a.session->held());
    const auto t0 = w.now;
    for (const char* line : {"<guest1> two", "<guest1> three"}) {
        const auto at = w.hub->resume_at(*a.session);
        CHECK(at - w.now > 1999ms);
        CHECK(at - w.now < 2001ms);
        w.now = at - 1ms;  // just before: still held, nothing new
        w.hub->resume(*a.session, w.now);
        CHECK(b.conn.take().empty());
        w.now = at;
        w.hub->resume(*a.session, w.now);
        CHECK(b.conn.take() == std::vector<std::string>{line});
    }
    CHECK(w.now - t0 > 3998ms);
    CHECK_FALSE(a.session->held());
    CHECK(a.session->open());
}
