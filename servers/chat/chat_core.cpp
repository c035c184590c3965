#include "servers/chat/chat_core.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace iolab::chat {

namespace {
// The bucket holds one second's worth of lines, but at least one line: with
// less than one token saved up, a slow rate (0.5 a second) would never let
// a line through.
double burst_of(double rate) {
    return std::max(1.0, rate);
}

// "20", "0.5", "0.25": the rate as a person wrote it.
std::string rate_text(double rate) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", rate);
    return buf;
}
}  // namespace

namespace {

std::string lower(std::string_view s) {
    std::string r(s);
    for (char& c : r)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// Splits "word rest of line" into its first word and the (trimmed) rest.
std::pair<std::string_view, std::string_view> split_word(std::string_view s) {
    s = trim(s);
    auto sp = s.find_first_of(" \t");
    if (sp == std::string_view::npos) return {s, {}};
    return {s.substr(0, sp), trim(s.substr(sp))};
}

bool name_chars(std::string_view s, std::size_t max) {
    if (s.empty() || s.size() > max) return false;
    if (!std::isalpha(static_cast<unsigned char>(s[0]))) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

constexpr std::size_t kMaxNick = 16;
constexpr std::size_t kMaxRoom = 24;
constexpr std::size_t kListWidth = 400;  // bytes of names per /who or /rooms line

}  // namespace

Session::Session(Connection& conn, std::string peer, std::string nick, std::size_t max_line,
                 Clock::time_point now, double tokens)
    : conn_(conn),
      peer_(std::move(peer)),
      nick_(std::move(nick)),
      framer_(max_line),
      tokens_(tokens),
      refilled_(now),
      last_line_(now) {}

void Room::add(Session& s) {
    s.room_ = this;
    s.slot_ = members_.size();
    members_.push_back(&s);
}

void Room::remove(Session& s) {
    // Swap with the last member: O(1), and order within a room means nothing.
    Session* last = members_.back();
    members_[s.slot_] = last;
    last->slot_ = s.slot_;
    members_.pop_back();
    s.room_ = nullptr;
}

Hub::Hub(const Limits& limits, std::function<void(std::string_view)> log)
    : limits_(limits), log_(std::move(log)) {
    room_named(kLobby);
}

Hub::~Hub() = default;

bool Hub::valid_nick(std::string_view nick) {
    return name_chars(nick, kMaxNick);
}
bool Hub::valid_room(std::string_view room) {
    return name_chars(room, kMaxRoom);
}

std::string_view Hub::text_problem(std::string_view s) {
    // UTF-8 by the book (RFC 3629): no overlong forms, no surrogates, nothing
    // past U+10FFFF. Control characters are refused too (a tab is fine): an
    // escape sequence relayed to other people's terminals is an attack.
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t') || c == 0x7f) return "control characters are not allowed";
            ++i;
            continue;
        }
        std::size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return "not valid UTF-8";
        }
        if (i + n > s.size()) return "not valid UTF-8";
        for (std::size_t k = 1; k < n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return "not valid UTF-8";
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return "not valid UTF-8";
        if (cp >= 0x80 && cp <= 0x9f) return "control characters are not allowed";
        i += n;
    }
    return {};
}

Room* Hub::find_room(std::string_view name) const {
    auto it = rooms_.find(lower(name));
    return it == rooms_.end() ? nullptr : it->second.get();
}

Session* Hub::find_nick(std::string_view nick) const {
    auto it = nicks_.find(lower(nick));
    return it == nicks_.end() ? nullptr : it->second;
}

Room& Hub::room_named(std::string_view name) {
    auto& slot = rooms_[lower(name)];
    if (!slot) slot = std::make_unique<Room>(std::string(name));
    return *slot;
}

std::string Hub::next_guest() {
    for (;;) {
        std::string nick = "guest" + std::to_string(++guests_);
        if (!nicks_.contains(nick)) return nick;
    }
}

// ---- output ----

void Hub::deliver(Session& to, std::string_view line) {
    if (!to.open_ || to.cut_) return;
    if (to.conn_.queued() + line.size() + 1 > limits_.max_queue) {
        // This client reads more slowly than the room talks. Waiting for it
        // would stall everyone; buffering more would let one client eat the
        // server's memory. It goes, after this fan-out has finished.
        to.cut_ = true;
        cut_.push_back(&to);
        return;
    }
    std::string& b = buf_;
    b.assign(line);
    b += '\n';
    to.conn_.send(b);
    ++stats_.delivered;
}

void Hub::broadcast(Room& room, std::string_view line, const Session* except) {
    // [lab:broadcast]
    std::string text(line);
    text += '\n';
    for (Session* m : room.members_) {
        if (m == except || !m->open_ || m->cut_) continue;
        if (m->conn_.queued() + text.size() > limits_.max_queue) {
            m->cut_ = true;
            cut_.push_back(m);
            continue;
        }
        m->conn_.send(text);
        ++stats_.delivered;
    }
    // [/lab:broadcast]
}

void Hub::notice(Room& room, std::string_view line, const Session* except) {
    if (limits_.notices_max != 0 && room.size() > limits_.notices_max) return;
    broadcast(room, line, except);
}

void Hub::list(Session& to, std::string_view head, std::vector<std::string> items) {
    std::sort(items.begin(), items.end());
    std::string out(head);
    bool empty_line = true;
    for (const auto& item : items) {
        if (!empty_line && out.size() + 1 + item.size() > kListWidth) {
            deliver(to, out);
            out = "***  ";
            empty_line = true;
        }
        out += ' ';
        out += item;
        empty_line = false;
    }
    deliver(to, out);
}

// ---- session lifecycle ----

void Hub::enter(Session& s, Room& room) {
    notice(room, "*** " + s.nick_ + " joined " + room.name(), &s);
    room.add(s);
}

void Hub::leave(Session& s, std::string_view why) {
    Room* room = s.room_;
    if (!room) return;
    room->remove(s);
    if (!stopping_) {
        std::string n = "*** " + s.nick_ + " left " + room->name();
        if (!why.empty()) n += " (" + std::string(why) + ")";
        notice(*room, n, &s);
    }
    if (room->size() == 0 && room->name() != kLobby) rooms_.erase(lower(room->name()));
}

void Hub::end(Session& s, std::string_view goodbye, std::string_view why, bool close_conn) {
    if (!s.open_) return;
    s.open_ = false;
    --open_;
    if (!goodbye.empty()) {
        // The last line goes out even past max_queue: one line more is a bound.
        std::string b(goodbye);
        b += '\n';
        s.conn_.send(b);
        ++stats_.delivered;
    }
    log("leave " + s.nick_ + " " + s.peer_ + ": " + std::string(why));
    leave(s, why);
    nicks_.erase(lower(s.nick_));
    if (close_conn) s.conn_.close();
}

void Hub::settle() {
    while (!cut_.empty()) {
        Session* s = cut_.back();
        cut_.pop_back();
        ++stats_.cut_off;
        const std::string limit = std::to_string(limits_.max_queue);
        log("cut off " + s->nick_ + " " + s->peer_ + ": more than " + limit +
            " bytes of output queued");
        end(*s,
            "error: disconnected: you read too slowly (more than " + limit +
                " bytes of output waiting)",
            "too slow", true);
    }
}

Session* Hub::connect(Connection& conn, std::string peer, Clock::time_point now) {
    if (open_ >= limits_.max_clients || stopping_) {
        ++stats_.refused;
        log("refuse " + peer + ": server full");
        conn.send("error: server full (" + std::to_string(limits_.max_clients) +
                  " clients); try again later\n");
        conn.close();
        return nullptr;
    }
    std::string nick = next_guest();
    double burst = burst_of(limits_.rate_limit);
    auto owned =
        std::make_unique<Session>(conn, std::move(peer), nick, limits_.max_line, now, burst);
    Session& s = *owned;
    sessions_.emplace(&s, std::move(owned));
    nicks_.emplace(lower(nick), &s);
    ++open_;
    ++stats_.admitted;
    Room& lobby = room_named(kLobby);
    deliver(s, "*** welcome to iolab chat, " + nick + ". You are in " + lobby.name() + " with " +
                   std::to_string(lobby.size()) + " other" + (lobby.size() == 1 ? "" : "s") +
                   ". /help lists the commands.");
    enter(s, lobby);
    log("join " + nick + " " + s.peer_ + " " + lobby.name());
    settle();
    return &s;
}

// ---- input and flood control ----
//
// Flood control delays, it does not drop (IRC's "fake lag"). Each session has
// a token bucket: rate_limit tokens a second, at most rate_limit saved up. A
// line costs a token. With none left, the line and everything after it wait
// in the session's inbox, in order, and the I/O layer stops reading the
// socket: what the client sends next waits in the kernel's receive queue,
// and once that is full TCP's window closes and the sender itself waits.
// As tokens come back (resume), the held lines go out one by one. Only a
// client with more than max_input bytes waiting (ours plus the kernel's) is
// disconnected: that is no paste, that is a flood without end.

void Hub::receive(Session& s, std::string_view bytes, Clock::time_point now) {
    if (!s.open_) return;
    refill(s, now);
    if (s.held()) {
        // Already holding: the new bytes queue behind the old ones.
        s.inbox_.erase(0, s.inbox_off_);
        s.inbox_off_ = 0;
        s.inbox_.append(bytes);
        return resume(s, now);
    }
    const std::size_t used = process(s, bytes, now);
    if (s.open_ && used < bytes.size()) {
        s.inbox_.assign(bytes.substr(used));
        s.inbox_off_ = 0;
    }
    check_held(s);
}

void Hub::resume(Session& s, Clock::time_point now) {
    if (!s.open_ || !s.held()) return;
    refill(s, now);
    std::string_view rest(s.inbox_);
    s.inbox_off_ += process(s, rest.substr(s.inbox_off_), now);
    if (!s.held() || !s.open_) {
        // Give the memory back: most sessions never hold anything.
        std::string().swap(s.inbox_);
        s.inbox_off_ = 0;
    }
    check_held(s);
}

Clock::time_point Hub::resume_at(const Session& s) const {
    if (limits_.rate_limit == 0 || s.tokens_ >= 1.0) return s.refilled_;
    // A microsecond more than the exact time: at resume_at the token is
    // there, whatever the floating-point rounding.
    const std::chrono::duration<double> wait((1.0 - s.tokens_) / limits_.rate_limit);
    return s.refilled_ + std::chrono::ceil<std::chrono::microseconds>(wait) +
           std::chrono::microseconds(1);
}

void Hub::refill(Session& s, Clock::time_point now) {
    if (limits_.rate_limit == 0 || now <= s.refilled_) return;
    const double rate = limits_.rate_limit;
    const double burst = burst_of(rate);
    const double elapsed = std::chrono::duration<double>(now - s.refilled_).count();
    s.refilled_ = now;
    s.tokens_ = std::min(burst, s.tokens_ + elapsed * rate);
    // A full bucket means a calm client: the next hold is news again.
    if (s.tokens_ >= burst) s.throttled_ = false;
}

std::size_t Hub::process(Session& s, std::string_view bytes, Clock::time_point now) {
    // Made once per call: a std::function per line would allocate per line.
    const LineFramer::LineHandler on_line = [&](std::string_view l) {
        s.last_line_ = now;
        line(s, l);
        settle();
    };
    const LineFramer::OverflowHandler on_overflow = [&] {
        deliver(s, "error: line longer than " + std::to_string(limits_.max_line) +
                       " bytes; it was dropped");
        settle();
    };
    // [lab:lines]
    std::size_t used = 0;
    while (used < bytes.size()) {
        if (!s.open_) return bytes.size();  // quit or cut off: the rest means nothing
        const std::string_view rest = bytes.substr(used);
        const auto nl = rest.find('\n');
        if (nl == std::string_view::npos) {
            // An unfinished line costs nothing yet: the framer keeps it (at
            // most max_line bytes) until its newline arrives.
            s.framer_.feed(rest, on_line, on_overflow);
            return bytes.size();
        }
        // One line at a time, each only with a token in hand.
        if (limits_.rate_limit != 0 && s.tokens_ < 1.0) break;
        s.framer_.feed(rest.substr(0, nl + 1), on_line, on_overflow);
        used += nl + 1;
    }
    return used;
    // [/lab:lines]
}

void Hub::check_held(Session& s) {
    if (!s.open_) return;
    if (!s.held()) return;
    const std::size_t waiting = s.backlog() + s.conn_.unread();
    if (waiting > limits_.max_input) {
        ++stats_.flooded;
        const std::string limit = std::to_string(limits_.max_input);
        log("cut off " + s.nick_ + " " + s.peer_ + ": flooding, " + std::to_string(waiting) +
            " bytes of input waiting (more than " + limit + ")");
        end(s,
            "error: disconnected: flooding (more than " + limit +
                " bytes of your input waiting at " + rate_text(limits_.rate_limit) +
                " lines per second)",
            "flooding", true);
        std::string().swap(s.inbox_);
        s.inbox_off_ = 0;
        settle();
        return;
    }
    if (!s.throttled_) {
        s.throttled_ = true;
        ++stats_.delayed;
        deliver(s, "*** flood control: more than " + rate_text(limits_.rate_limit) +
                       " lines per second; your next lines are delayed, not dropped");
        settle();
    }
}

void Hub::idle(Session& s) {
    if (!s.open_) return;
    end(s, "*** disconnected: idle for " + std::to_string(limits_.idle_timeout) + " seconds",
        "idle", true);
    settle();
}

void Hub::disconnected(Session& s, std::string_view why) {
    if (s.open_) end(s, {}, why, false);
    settle();
    // `s` may still sit in cut_ if it was marked and then hung up; settle()
    // has emptied cut_, so nothing refers to it any more.
    sessions_.erase(&s);
}

void Hub::shutdown(std::string_view why) {
    stopping_ = true;
    std::vector<Session*> all;
    all.reserve(sessions_.size());
    for (auto& [key, s] : sessions_)
        all.push_back(s.get());
    for (Session* s : all)
        end(*s, "*** " + std::string(why), "server shutdown", true);
    cut_.clear();
}

// ---- lines and commands ----

void Hub::line(Session& s, std::string_view l) {
    if (trim(l).empty()) return;                    // blank lines cost nothing and mean nothing
    if (limits_.rate_limit != 0) s.tokens_ -= 1.0;  // process() saw a token for it
    if (auto problem = text_problem(l); !problem.empty()) {
        deliver(s, "error: line refused: " + std::string(problem));
        return;
    }
    if (l.size() >= 2 && l[0] == '/' && l[1] == '/') {
        l.remove_prefix(1);  // "//text" is the message "/text"
    } else if (l[0] == '/') {
        auto [cmd, arg] = split_word(l.substr(1));
        command(s, cmd, arg);
        return;
    }
    ++stats_.messages;
    broadcast(*s.room_, "<" + s.nick_ + "> " + std::string(l), &s);
}

void Hub::command(Session& s, std::string_view cmd, std::string_view arg) {
    const std::string c = lower(cmd);
    if (c == "nick") {
        cmd_nick(s, arg);
    } else if (c == "who") {
        cmd_who(s);
    } else if (c == "msg") {
        cmd_msg(s, arg);
    } else if (c == "me") {
        if (arg.empty()) return deliver(s, "error: usage: /me ACTION");
        ++stats_.messages;
        broadcast(*s.room_, "* " + s.nick_ + " " + std::string(arg), &s);
    } else if (c == "join") {
        cmd_join(s, arg);
    } else if (c == "rooms") {
        cmd_rooms(s);
    } else if (c == "quit") {
        std::string why = arg.empty() ? std::string("quit") : "quit: " + std::string(arg);
        end(s, "*** bye, " + s.nick_, why, true);
    } else if (c == "help") {
        cmd_help(s);
    } else {
        deliver(s, "error: unknown command /" + std::string(cmd) + " (/help lists the commands)");
    }
}

void Hub::cmd_nick(Session& s, std::string_view arg) {
    auto [nick, rest] = split_word(arg);
    if (nick.empty() || !rest.empty()) return deliver(s, "error: usage: /nick NAME");
    if (!valid_nick(nick))
        return deliver(s, "error: invalid nick \"" + std::string(nick) + "\": 1-" +
                              std::to_string(kMaxNick) +
                              " letters, digits, _ or -, starting with a letter");
    Session* owner = find_nick(nick);
    if (owner && owner != &s) return deliver(s, "error: nick " + std::string(nick) + " is taken");
    if (nick == s.nick_) return deliver(s, "*** you are already " + s.nick_);
    const std::string old = s.nick_;
    nicks_.erase(lower(old));
    s.nick_ = std::string(nick);
    nicks_.emplace(lower(s.nick_), &s);
    log("nick " + old + " -> " + s.nick_ + " " + s.peer_);
    deliver(s, "*** you are now known as " + s.nick_);
    broadcast(*s.room_, "*** " + old + " is now known as " + s.nick_, &s);
}

void Hub::cmd_who(Session& s) {
    Room& r = *s.room_;
    std::vector<std::string> names;
    names.reserve(r.size());
    for (Session* m : r.members_)
        names.push_back(m->nick_);
    list(s, "*** in " + r.name() + " (" + std::to_string(r.size()) + "):", std::move(names));
}

void Hub::cmd_msg(Session& s, std::string_view arg) {
    auto [nick, text] = split_word(arg);
    if (nick.empty() || text.empty()) return deliver(s, "error: usage: /msg NICK TEXT");
    Session* to = find_nick(nick);
    if (!to) return deliver(s, "error: no such nick: " + std::string(nick));
    deliver(*to, "*" + s.nick_ + "* " + std::string(text));
    deliver(s, "-> *" + to->nick_ + "* " + std::string(text));
}

void Hub::cmd_join(Session& s, std::string_view arg) {
    auto [name, rest] = split_word(arg);
    if (!name.empty() && name[0] == '#') name.remove_prefix(1);  // IRC habit
    if (name.empty() || !rest.empty()) return deliver(s, "error: usage: /join ROOM");
    if (!valid_room(name))
        return deliver(s, "error: invalid room \"" + std::string(name) + "\": 1-" +
                              std::to_string(kMaxRoom) +
                              " letters, digits, _ or -, starting with a letter");
    if (Room* here = find_room(name); here == s.room_)
        return deliver(s, "*** you are already in " + s.room_->name());
    leave(s, "joined another room");
    Room& room = room_named(name);
    deliver(s, "*** you are now in " + room.name() + " with " + std::to_string(room.size()) +
                   " other" + (room.size() == 1 ? "" : "s"));
    enter(s, room);
    log("move " + s.nick_ + " " + s.peer_ + " " + room.name());
}

void Hub::cmd_rooms(Session& s) {
    std::vector<std::string> items;
    items.reserve(rooms_.size());
    for (auto& [key, r] : rooms_)
        items.push_back(r->name() + "(" + std::to_string(r->size()) + ")");
    list(s, "*** rooms (" + std::to_string(rooms_.size()) + "):", std::move(items));
}

void Hub::cmd_help(Session& s) {
    static constexpr std::string_view lines[] = {
        "*** commands:",
        "***   /nick NAME      change your nick",
        "***   /who            who is in this room",
        "***   /msg NICK TEXT  a private message",
        "***   /me ACTION      * nick ACTION",
        "***   /join ROOM      move to ROOM (made if new); /rooms lists them",
        "***   /quit [MESSAGE] leave",
        "***   anything else goes to your room; start with // to send a leading /",
    };
    for (auto l : lines)
        deliver(s, l);
    std::string lim = "*** limits: lines up to " + std::to_string(limits_.max_line) + " bytes";
    if (limits_.rate_limit) lim += ", " + rate_text(limits_.rate_limit) + " lines per second";
    if (limits_.idle_timeout)
        lim += ", disconnect after " + std::to_string(limits_.idle_timeout) + " s idle";
    lim += ", " + std::to_string(limits_.max_queue) + " bytes of unread output";
    if (limits_.rate_limit)
        lim += ", " + std::to_string(limits_.max_input) + " bytes of held input";
    deliver(s, lim);
}

}  // namespace iolab::chat
