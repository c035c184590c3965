// The chat's logic — sessions, rooms, nicks, commands and limits — with no
// sockets in it. The I/O layer (chat_server.cpp, on libevent) gives every
// client a Connection: a place to queue output bytes and a way to end the
// connection. It feeds the bytes it reads to Hub::receive and tells the Hub
// when a connection has gone. Everything else happens here, so the unit tests
// drive a Hub with fake connections and a fake clock.
//
// The model (the same split as Asio's chat example):
//   Connection  the I/O side of one client: an output queue with a length
//   Session     one client's protocol state: nick, room, line framer, flood bucket
//   Room        the sessions a line fans out to
//   Hub         owns the sessions and rooms, parses lines, enforces the limits
//
// Protocol (UTF-8 lines ending in "\n" or "\r\n"; the server sends "\n"):
//   <nick> text          a message from someone in your room
//   * nick action        /me
//   *nick* text          a private message to you (/msg); you see "-> *nick* text"
//   *** ...              notices: welcome, joins, leaves, nick changes, lists, limits
//   error: ...           your last line was refused, and why
// A line starting with "//" is a message starting with "/".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/line_framer.hpp"

namespace iolab::chat {

using Clock = std::chrono::steady_clock;

struct Limits {
    std::size_t max_line = 4096;         // bytes per input line
    std::size_t max_queue = 256 * 1024;  // output bytes queued for one client
    // Flood control: lines per second per client, a real number (0.5 = one
    // line every 2 s); burst: one second's worth, at least one line. 0 = off.
    // Lines past the rate are delayed, never dropped.
    double rate_limit = 20;
    // Input received (the kernel's share, Connection::unread, plus ours) and
    // not yet processed, for a client held back by flood control.
    std::size_t max_input = 256 * 1024;
    unsigned idle_timeout =
        600;  // seconds without a complete line; 0 = none (the I/O layer times it)
    std::size_t max_clients = 10000;  // sessions at once
    std::size_t notices_max = 500;  // join/leave notices only in rooms up to this size; 0 = always
};

// The I/O side of one client, as the chat logic sees it.
class Connection {
  public:
    virtual ~Connection() = default;
    // Appends bytes to the client's output queue. Never blocks, never fails:
    // the Hub checks queued() against Limits::max_queue before it sends.
    virtual void send(std::string_view bytes) = 0;
    // Bytes handed to send() and not yet written to the socket.
    [[nodiscard]] virtual std::size_t queued() const = 0;
    // The server ends this connection: stop handing input to the Hub, flush
    // what is queued (within a bounded time), then close. Must not call back
    // into the Hub; the I/O layer calls Hub::disconnected once it has closed.
    virtual void close() = 0;
    // Bytes that have arrived for this client and that the I/O layer has not
    // read from its socket yet (the kernel's receive queue: FIONREAD). The
    // Hub adds them to its own backlog when it checks Limits::max_input.
    [[nodiscard]] virtual std::size_t unread() const { return 0; }
};

class Hub;
class Room;

class Session {
  public:
    Session(Connection& conn, std::string peer, std::string nick, std::size_t max_line,
            Clock::time_point now, double tokens);
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    [[nodiscard]] const std::string& nick() const noexcept { return nick_; }
    [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
    [[nodiscard]] Room* room() const noexcept { return room_; }
    // False once the session has ended (quit, cut off, idle, shutdown): it is
    // out of its room, its nick is free, and its connection is closing.
    [[nodiscard]] bool open() const noexcept { return open_; }
    [[nodiscard]] Connection& connection() const noexcept { return conn_; }
    // Flood control is holding this session's input: complete lines wait for
    // their tokens (Hub::resume_at). The I/O layer stops reading the socket
    // while it is true, so the rest waits in the kernel and TCP holds the
    // sender back.
    [[nodiscard]] bool held() const noexcept { return inbox_.size() > inbox_off_; }
    // Bytes received and not processed yet (held input, the unfinished line).
    [[nodiscard]] std::size_t backlog() const noexcept {
        return inbox_.size() - inbox_off_ + framer_.buffered();
    }
    // When the last complete line arrived (connect time before the first).
    [[nodiscard]] Clock::time_point last_line() const noexcept { return last_line_; }

  private:
    friend class Hub;
    friend class Room;
    Connection& conn_;
    std::string peer_;
    std::string nick_;
    Room* room_ = nullptr;
    std::size_t slot_ = 0;  // index in room_->members_, for O(1) removal
    LineFramer framer_;
    std::string inbox_;          // held input, from its first unprocessed line on
    std::size_t inbox_off_ = 0;  // bytes of inbox_ already processed
    double tokens_;              // flood control: a token bucket refilled at rate_limit per second
    Clock::time_point refilled_;
    Clock::time_point last_line_;
    bool throttled_ = false;  // announced the delay; quiet until the bucket is full again
    bool open_ = true;
    bool cut_ = false;  // over max_queue: ends after the current fan-out
};

class Room {
  public:
    explicit Room(std::string name) : name_(std::move(name)) {}
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
    [[nodiscard]] const std::vector<Session*>& members() const noexcept { return members_; }

  private:
    friend class Hub;
    void add(Session& s);
    void remove(Session& s);
    std::string name_;
    std::vector<Session*> members_;
};

// Counters the server reports.
struct HubStats {
    uint64_t admitted = 0;   // sessions created
    uint64_t refused = 0;    // "server full"
    uint64_t cut_off = 0;    // slow readers disconnected at max_queue
    uint64_t flooded = 0;    // flooders disconnected at max_input
    uint64_t delayed = 0;    // times a session's input was held back by flood control
    uint64_t messages = 0;   // room messages (/me included) fanned out
    uint64_t delivered = 0;  // lines queued to clients, all kinds
};

class Hub {
  public:
    // `log` receives one line per join, leave, nick change and cut-off (the
    // server passes its -v logger); it may be empty.
    explicit Hub(const Limits& limits, std::function<void(std::string_view)> log = {});
    ~Hub();
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    static constexpr std::string_view kLobby = "lobby";

    // A new connection. Returns its session (welcomed, in the lobby), or
    // nullptr when the server is full: the refusal line is then queued and
    // conn.close() called, and the I/O layer never calls in for it again.
    Session* connect(Connection& conn, std::string peer, Clock::time_point now);
    // Bytes read from the session's connection, in order. Complete lines are
    // processed while the flood bucket has tokens; the rest is held, in
    // order (s.held()), until resume() finds tokens for it. A session whose
    // backlog plus its connection's unread() passes max_input is ended.
    void receive(Session& s, std::string_view bytes, Clock::time_point now);
    // Processes held lines whose tokens have come back (same rules).
    void resume(Session& s, Clock::time_point now);
    // When the next held line can go: the time its token is back.
    [[nodiscard]] Clock::time_point resume_at(const Session& s) const;
    // When the session counts as idle: its last complete line plus
    // idle_timeout (a byte drip without a newline does not count).
    [[nodiscard]] Clock::time_point idle_deadline(const Session& s) const {
        return s.last_line_ + std::chrono::seconds(limits_.idle_timeout);
    }
    // No input for Limits::idle_timeout seconds: tells the client, ends the session.
    void idle(Session& s);
    // The connection is gone (peer closed or reset, or the close() finished).
    // The session leaves its room if still open and is destroyed: `s` is
    // dangling afterwards. `why` ends up in the leave notice and the log.
    void disconnected(Session& s, std::string_view why);
    // Tells every client the server is going down and closes every session.
    void shutdown(std::string_view why);

    [[nodiscard]] const Limits& limits() const noexcept { return limits_; }
    [[nodiscard]] const HubStats& stats() const noexcept { return stats_; }
    // Sessions alive, counting those whose connection is still closing.
    [[nodiscard]] std::size_t sessions() const noexcept { return sessions_.size(); }
    // Sessions open (what --max-clients counts): a client that has quit does
    // not keep a newcomer out while its connection finishes closing.
    [[nodiscard]] std::size_t open_sessions() const noexcept { return open_; }
    [[nodiscard]] Room* find_room(std::string_view name) const;
    [[nodiscard]] Session* find_nick(std::string_view nick) const;
    [[nodiscard]] std::size_t room_count() const noexcept { return rooms_.size(); }

    // Protocol rules, public for the tests.
    static bool valid_nick(std::string_view nick);
    static bool valid_room(std::string_view room);
    // "" when `line` is acceptable chat text, else why not (bad UTF-8, control bytes).
    static std::string_view text_problem(std::string_view line);

  private:
    void line(Session& s, std::string_view line);
    // Frames and handles `bytes` line by line while tokens last; returns how
    // many bytes it consumed (all of them unless flood control held a line).
    std::size_t process(Session& s, std::string_view bytes, Clock::time_point now);
    // After input: announces a new hold, ends a flooder past max_input.
    void check_held(Session& s);
    void refill(Session& s, Clock::time_point now);
    void command(Session& s, std::string_view cmd, std::string_view arg);
    void cmd_nick(Session& s, std::string_view arg);
    void cmd_who(Session& s);
    void cmd_msg(Session& s, std::string_view arg);
    void cmd_join(Session& s, std::string_view arg);
    void cmd_rooms(Session& s);
    void cmd_help(Session& s);

    // Queues `line` + "\n" for `to` unless that would pass max_queue; then
    // `to` is marked to be cut off once the current operation has finished.
    void deliver(Session& to, std::string_view line);
    // The same text to every open member of `room` except `except`.
    void broadcast(Room& room, std::string_view line, const Session* except);
    // A join/leave notice, only in rooms not larger than notices_max.
    void notice(Room& room, std::string_view line, const Session* except);
    // A list ("*** in lobby (3): a b c") wrapped over lines of bounded length.
    void list(Session& to, std::string_view head, std::vector<std::string> items);

    void enter(Session& s, Room& room);
    void leave(Session& s, std::string_view why);
    // Ends an open session: `goodbye` (if any) to the client past the queue
    // bound (one line), a leave notice, nick freed, conn.close() if asked.
    void end(Session& s, std::string_view goodbye, std::string_view why, bool close_conn);
    // Ends the sessions marked during the last fan-out, and those their leave
    // notices mark in turn.
    void settle();
    Room& room_named(std::string_view name);
    std::string next_guest();
    void log(std::string_view line) const {
        if (log_) log_(line);
    }

    Limits limits_;
    std::function<void(std::string_view)> log_;
    std::unordered_map<std::string, std::unique_ptr<Room>> rooms_;  // key: lower-case name
    std::unordered_map<std::string, Session*> nicks_;               // key: lower-case nick
    std::unordered_map<const Session*, std::unique_ptr<Session>> sessions_;
    std::vector<Session*> cut_;  // marked during a fan-out
    std::size_t open_ = 0;
    uint64_t guests_ = 0;
    bool stopping_ = false;
    HubStats stats_;
    std::string buf_;  // scratch for formatting a line once per fan-out
};

}  // namespace iolab::chat
