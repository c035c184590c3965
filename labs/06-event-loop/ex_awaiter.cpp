// ex-awaiter — write it yourself: the object co_await talks to (lab 06, stage 4).
//
// Usage: ex-awaiter [--delay-ms MS]
//
// `co_await x` asks x three things (aio.hpp has the lab's own awaiters):
//   await_ready()     can the coroutine go on without suspending? (false:
//                     the descriptor is not known to be ready, so wait)
//   await_suspend(c)  the coroutine is suspended; `c` resumes it. Register
//                     something whose callback will call c.resume() — here a
//                     reader on the descriptor (add_reader) — and return: the
//                     loop goes on with other work
//   await_resume()    the coroutine is resumed: the value of the co_await
// and the awaiter lives in the suspended coroutine's frame, so its
// destructor runs when a waiting task is destroyed (cancelled): that is where
// it must give its reader back, or the loop would later resume a coroutine
// that no longer exists.
//
// Yours is the class Readable below (the TODOs): co_await readable(loop, fd)
// suspends the task until fd is readable.
//
// The scene, on non-blocking pipes:
//   1. a task waits with co_await readable() on a pipe; a timer writes "ping"
//      into it after --delay-ms; the task then reads it.
//        got=ping  woke_after_ms=N
//   2. a task waits on a pipe nobody writes; after 50 ms it is destroyed.
//        watched_while_waiting=1  (its reader is registered)
//        watched_after_cancel=0   (the awaiter's destructor removed it)
//   3. a task waits twice in a row on one pipe; timers write "one", then
//      "two". The reader callback resumes the coroutine, which runs on to
//      its next co_await readable() and registers a new reader for the same
//      descriptor before the callback returns — so the callback must remove
//      its reader *before* c.resume(), never after.
//        got_twice=one,two
//   4. rounds=N   loop rounds for the three scenes: a handful when the
//      waiting task sleeps in epoll_wait, thousands when something spins.
// and last, the program's own verdict: "check: PASS — ..." or "check:
// FAIL — what is wrong" (scripts/lab.sh's lab_check prints it). Each scene
// has a time limit, so an awaiter that never resumes ends with a message.

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <coroutine>
#include <cstdio>
#include <string>

#include "common/error.hpp"
#include "common/program.hpp"
#include "labs/06-event-loop/aio.hpp"

namespace {

using namespace evloop;
using namespace std::chrono_literals;

// co_await readable(loop, fd): suspends until `fd` is readable.
class Readable {
  public:
    Readable(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {}
    Readable(const Readable&) = delete;
    ~Readable() {
        // TODO(you): destroyed while still waiting (the task was cancelled):
        // remove the reader, so that the loop never calls it
        // (LAB.md § Stage 4: the object co_await talks to).
    }
    bool await_ready() const noexcept {
        // TODO(you): false — we do not know that fd_ is readable, so suspend
        // (LAB.md § Stage 4).
        return true;
    }
    void await_suspend(std::coroutine_handle<> c) {
        // TODO(you): remember that we wait (waiting_), and register a reader
        // for fd_ with loop_.add_reader whose callback removes the reader
        // (remove_reader, waiting_ = false) and then resumes c — last, since
        // resuming runs the coroutine on: it may wait again (a new reader on
        // the same fd) or end and destroy this awaiter (LAB.md § Stage 4).
        (void)c;
    }
    void await_resume() const noexcept {}

  private:
    // [[maybe_unused]]: clang warns about fields nothing reads yet; the
    // three are used once you write the TODOs (and the marks can go).
    [[maybe_unused]] EventLoop& loop_;
    [[maybe_unused]] int fd_;
    [[maybe_unused]] bool waiting_ = false;
};
Readable readable(EventLoop& loop, int fd) {
    return Readable(loop, fd);
}

// Waits until `fd` is readable, then reads what is there.
Task<std::string> wait_and_read(EventLoop& loop, int fd) {
    co_await readable(loop, fd);
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) co_return "(read: " + iolab::errno_text(errno) + ")";
    co_return std::string(buf, static_cast<std::size_t>(n));
}

// Waits twice on the same descriptor: two messages, "A,B".
Task<std::string> wait_and_read_twice(EventLoop& loop, int fd) {
    std::string got;
    for (int i = 0; i < 2; ++i) {
        got += (i == 0 ? "" : ",") + co_await wait_and_read(loop, fd);
    }
    co_return got;
}

// Runs the loop until `t` is done or `limit` has passed; false on the limit.
template <class T>
bool run_for(EventLoop& loop, Task<T>& t, Clock::duration limit) {
    bool late = false;
    Handle watchdog = loop.call_later(limit, [&] { late = true; });
    t.start(loop);
    loop.run_until([&] { return t.done() || late; });
    watchdog.cancel();
    return t.done();
}

Task<void> pause(EventLoop& loop, Clock::duration d) {
    co_await sleep(loop, d);
}

// A non-blocking pipe whose ends leave the loop before they close.
struct Pipe {
    WatchedFd r, w;
};
Pipe make_pipe(EventLoop& loop) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) iolab::throw_sys("pipe2");
    return {WatchedFd(loop, iolab::Fd(fds[0])), WatchedFd(loop, iolab::Fd(fds[1]))};
}

}  // namespace

int main(int argc, char** argv) {
    int delay_ms = 100;
    CLI::App app{"Write it yourself: an awaiter for a readable descriptor (lab 06)"};
    iolab::setup_program(app, "ex-awaiter",
                         "Exit codes:\n  0  the task woke with the data and left nothing behind\n"
                         "  1  internal error\n  2  usage error\n  3  check: FAIL (it did not)");
    app.add_option("--delay-ms", delay_ms, "When the timer writes into the pipe")
        ->check(CLI::Range(0, 10'000))
        ->capture_default_str();
    IOLAB_PARSE(app, argc, argv);

    return iolab::guarded_main("ex-awaiter", [&] {
        EventLoop loop;
        const auto delay = std::chrono::milliseconds(delay_ms);
        const auto limit = 2 * delay + 2s;  // for each scene: then it has failed
        // Scene 1: wake on data.
        Pipe a = make_pipe(loop);
        const auto t0 = loop.time();
        loop.call_later(delay, [&] {
            if (::write(a.w.get(), "ping", 4) != 4) iolab::throw_sys("write", "the pipe");
        });
        Task<std::string> first = wait_and_read(loop, a.r.get());
        const bool woke = run_for(loop, first, limit);
        const std::string got = woke ? first.result() : "(still waiting)";
        const auto woke_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(loop.time() - t0).count();
        std::printf("got=%s\nwoke_after_ms=%lld\n", got.c_str(), static_cast<long long>(woke_ms));

        // Scene 2: cancelled while waiting.
        Pipe b = make_pipe(loop);
        std::size_t while_waiting = 0;
        {
            Task<std::string> waiting = wait_and_read(loop, b.r.get());
            waiting.start(loop);
            run_until_complete(loop, pause(loop, 50ms));
            while_waiting = loop.watched_count();
        }  // `waiting` destroyed: its frame, and the Readable in it, go
        const std::size_t after = loop.watched_count();
        std::printf("watched_while_waiting=%zu\nwatched_after_cancel=%zu\n", while_waiting, after);

        // Scene 3: two waits in a row on one descriptor.
        Pipe d = make_pipe(loop);
        loop.call_later(delay, [&] {
            if (::write(d.w.get(), "one", 3) != 3) iolab::throw_sys("write", "the pipe");
        });
        loop.call_later(2 * delay, [&] {
            if (::write(d.w.get(), "two", 3) != 3) iolab::throw_sys("write", "the pipe");
        });
        std::string twice = "(still waiting)";
        {
            Task<std::string> t = wait_and_read_twice(loop, d.r.get());
            if (run_for(loop, t, limit)) twice = t.result();
        }  // if it is still waiting: destroyed, its reader removed
        std::printf("got_twice=%s\n", twice.c_str());
        std::printf("rounds=%llu\n", static_cast<unsigned long long>(loop.rounds()));

        std::string fail;
        if (got.rfind("(read:", 0) == 0)
            fail = "the task read the pipe before anything was written (" + got.substr(1) +
                   ": await_ready() must answer false, so that the task suspends";
        else if (!woke)
            fail =
                "the task waiting for the pipe never woke: await_suspend() must register "
                "a reader (add_reader) whose callback resumes it";
        else if (got != "ping")
            fail = "got=" + got + ", not ping";
        else if (woke_ms < delay_ms)
            fail = "the task woke after " + std::to_string(woke_ms) + " ms, before the write";
        else if (while_waiting != 1)
            fail = std::to_string(while_waiting) +
                   " descriptor(s) watched while one task waits, not 1: await_suspend() must "
                   "add_reader";
        else if (after != 0)
            fail =
                "the destroyed task's reader is still watched: ~Readable() must remove it "
                "while waiting_ (else the loop would resume a coroutine that is gone)";
        else if (twice == "(still waiting)")
            fail =
                "the second co_await readable() on the same pipe never woke: its reader "
                "was removed by the first one's callback — remove_reader before c.resume(), "
                "which runs the coroutine on to its next co_await";
        else if (twice != "one,two")
            fail = "got_twice=" + twice + ", not one,two";
        else if (loop.rounds() > 50)
            fail = std::to_string(loop.rounds()) + " loop rounds: something spins";
        if (!fail.empty()) {
            std::printf("check: FAIL — %s\n", fail.c_str());
            return 3;
        }
        std::printf(
            "check: PASS — woke on data after %lld ms, left no reader behind, waited "
            "twice on one pipe\n",
            static_cast<long long>(woke_ms));
        return 0;
    });
}
