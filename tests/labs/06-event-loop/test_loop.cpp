// labs/06-event-loop: the reactor (ordering, timers, cancellation, descriptors,
// executor, signals) and the coroutine layer (Task, sleep, sockets, wait_for,
// gather, as_completed, AsyncSemaphore, AsyncQueue, to_thread).
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "labs/06-event-loop/combinators.hpp"

using namespace evloop;
using namespace std::chrono_literals;

namespace {

struct Pair {
    iolab::Fd a, b;
};
Pair socket_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    return {iolab::Fd(sv[0]), iolab::Fd(sv[1])};
}

}  // namespace

TEST_CASE("call_soon runs callbacks in FIFO order, in the next round", "[evloop]") {
    EventLoop loop;
    std::vector<int> order;
    for (int i = 0; i < 5; ++i)
        loop.call_soon([&order, i] { order.push_back(i); });
    CHECK(order.empty());  // nothing runs before the loop does
    loop.run_once();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("timers fire by deadline; equal deadlines in scheduling order", "[evloop]") {
    EventLoop loop;
    std::vector<std::string> order;
    auto note = [&](std::string s) { return [&order, s] { order.push_back(s); }; };
    loop.call_later(30ms, note("30"));
    loop.call_later(10ms, note("10"));
    loop.call_later(20ms, note("20"));
    const auto t = loop.time() + 5ms;
    for (const char* s : {"a", "b", "c", "d"})
        loop.call_at(t, note(s));
    loop.call_soon(note("soon"));  // scheduled last, runs first
    loop.call_later(40ms, [&] { loop.stop(); });
    const auto start = Clock::now();
    loop.run_forever();
    CHECK(order == std::vector<std::string>{"soon", "a", "b", "c", "d", "10", "20", "30"});
    CHECK(Clock::now() - start >= 40ms);  // never early
}

TEST_CASE("callbacks and timers scheduled while the loop runs wait for a later round", "[evloop]") {
    EventLoop loop;
    uint64_t scheduled_in = 0, soon_ran_in = 0, timer_ran_in = 0;
    loop.call_soon([&] {
        scheduled_in = loop.rounds();
        loop.call_soon([&] { soon_ran_in = loop.rounds(); });
        loop.call_later(0ms, [&] { timer_ran_in = loop.rounds(); });
        loop.call_at(loop.time() - 1s, [&] { loop.stop(); });  // already due
    });
    loop.run_forever();
    CHECK(scheduled_in == 1);
    CHECK(soon_ran_in == 2);
    CHECK(timer_ran_in == 2);
}

TEST_CASE("a callback rescheduling itself cannot starve the descriptors", "[evloop]") {
    EventLoop loop;
    Pair p = socket_pair();
    bool read_seen = false;
    int spins = 0;
    std::function<void()> spin = [&] {
        if (++spins < 1000 && !read_seen) loop.call_soon(spin);
    };
    loop.call_soon(spin);
    loop.add_reader(p.a.get(), [&] {
        read_seen = true;
        loop.remove_reader(p.a.get());
    });
    REQUIRE(::write(p.b.get(), "x", 1) == 1);
    loop.run_until([&] { return read_seen; });
    CHECK(read_seen);
    CHECK(spins < 10);  // the reader ran in the first rounds, not after 1000 spins
    loop.forget(p.a.get());
}

TEST_CASE("cancelled handles do not run and free their captures", "[evloop]") {
    EventLoop loop;
    auto token = std::make_shared<int>(1);
    int ran = 0;
    Handle soon = loop.call_soon([token, &ran] { ++ran; });
    Handle later = loop.call_later(1ms, [token, &ran] { ++ran; });
    CHECK(token.use_count() == 3);
    soon.cancel();
    later.cancel();
    CHECK(token.use_count() == 1);  // freed at cancel time
    CHECK(soon.cancelled());
    CHECK_FALSE(later.pending());
    loop.call_later(5ms, [&] { loop.stop(); });
    loop.run_forever();
    CHECK(ran == 0);

    // Many cancelled timeouts do not pile up in the heap.
    std::vector<Handle> hs;
    for (int i = 0; i < 1000; ++i)
        hs.push_back(loop.call_later(1h, [] {}));
    for (auto& h : hs)
        h.cancel();
    CHECK(loop.timers_pending() < 600);
}

TEST_CASE("an old handle to a reused slot does not cancel the new callback", "[evloop]") {
    EventLoop loop;
    int a = 0, b = 0, c = 0;
    // Cancelled: the slot is freed at once, and the next timer reuses it.
    Handle first = loop.call_later(1ms, [&a] { ++a; });
    Handle copy = first;  // a second handle to the same timer, not cancelled itself
    first.cancel();
    CHECK(first.cancelled());
    CHECK_FALSE(copy.pending());
    Handle second = loop.call_later(1ms, [&b] { ++b; });
    CHECK(second.pending());
    copy.cancel();  // same slot, older generation: must not touch `second`
    CHECK_FALSE(copy.cancelled());
    CHECK(second.pending());
    CHECK(loop.timers_pending() == 2);  // the cancelled entry waits in the heap

    // Ran: the slot is freed before the callback, and reused by call_soon.
    loop.run_until([&] { return b == 1; });
    CHECK_FALSE(second.pending());
    Handle third = loop.call_soon([&c] { ++c; });
    second.cancel();
    CHECK_FALSE(second.cancelled());
    CHECK(third.pending());
    loop.run_once();
    CHECK(a == 0);
    CHECK(b == 1);
    CHECK(c == 1);
    CHECK(loop.timers_pending() == 0);  // the cancelled entry was skipped when reached
}

TEST_CASE("equal deadlines fire in scheduling order across reused slots", "[evloop]") {
    EventLoop loop;
    std::vector<int> order;
    const auto when = loop.time() + 2ms;
    std::vector<Handle> hs;
    for (int i = 0; i < 100; ++i)
        hs.push_back(loop.call_at(when, [&order, i] { order.push_back(i); }));
    for (int i = 0; i < 100; i += 2)
        hs[static_cast<std::size_t>(i)].cancel();  // frees 50 slots for the next 50
    for (int i = 100; i < 150; ++i)
        loop.call_at(when, [&order, i] { order.push_back(i); });
    loop.run_until([&] { return order.size() == 100; });
    std::vector<int> want;
    for (int i = 1; i < 100; i += 2)
        want.push_back(i);
    for (int i = 100; i < 150; ++i)
        want.push_back(i);
    CHECK(order == want);
}

TEST_CASE("readers and writers: registered, called, removed", "[evloop]") {
    EventLoop loop;
    Pair p = socket_pair();
    int reads = 0, writes = 0;
    loop.add_writer(p.a.get(), [&] {
        ++writes;
        loop.remove_writer(p.a.get());  // a socket is writable nearly always
    });
    loop.add_reader(p.a.get(), [&] {
        char buf[16];
        if (::read(p.a.get(), buf, sizeof buf) > 0) ++reads;
    });
    loop.run_once();
    CHECK(writes == 1);
    CHECK(reads == 0);
    REQUIRE(::write(p.b.get(), "hi", 2) == 2);
    loop.run_once();
    CHECK(reads == 1);
    loop.remove_reader(p.a.get());
    REQUIRE(::write(p.b.get(), "hi", 2) == 2);
    loop.call_later(20ms, [&] { loop.stop(); });
    loop.run_forever();
    CHECK(reads == 1);  // no callback any more
    CHECK(writes == 1);
    CHECK(loop.watched_count() == 0);
}

TEST_CASE("run_in_executor: results and exceptions arrive on the loop thread", "[evloop]") {
    EventLoop loop(2);
    const auto loop_thread = std::this_thread::get_id();
    std::thread::id worker;
    Future<int> f = loop.run_in_executor([&] {
        worker = std::this_thread::get_id();
        std::this_thread::sleep_for(20ms);  // blocking, but not on the loop
        return 42;
    });
    std::thread::id callback_thread;
    f.add_done_callback([&] { callback_thread = std::this_thread::get_id(); });
    CHECK(loop.run_until_complete(f) == 42);
    CHECK(worker != loop_thread);
    loop.run_once();  // the done-callback is a call_soon
    CHECK(callback_thread == loop_thread);

    Future<void> bad = loop.run_in_executor([] { throw std::domain_error("from the pool"); });
    CHECK_THROWS_AS(loop.run_until_complete(bad), std::domain_error);

    // Many at once: every one comes back.
    std::vector<Future<int>> fs;
    for (int i = 0; i < 200; ++i)
        fs.push_back(loop.run_in_executor([i] { return i * i; }));
    long sum = 0;
    for (auto& x : fs)
        sum += loop.run_until_complete(x);
    CHECK(sum == 2646700);
}

TEST_CASE("run_until_complete fails when the loop is stopped first", "[evloop]") {
    EventLoop loop;
    Future<int> never(loop);
    loop.call_soon([&] { loop.stop(); });
    CHECK_THROWS_AS(loop.run_until_complete(never), std::runtime_error);
}

TEST_CASE("SIGTERM arrives through the signalfd and stops the loop", "[evloop]") {
    EventLoop loop;
    loop.add_signal_handler();
    loop.call_soon([] { ::kill(::getpid(), SIGTERM); });
    loop.call_later(10s, [&] { FAIL("no signal"); });
    loop.run_forever();
    CHECK(loop.last_signal() == SIGTERM);
}

// ---- coroutines ---------------------------------------------------------------

namespace {

Task<int> add_later(EventLoop& loop, int a, int b, std::chrono::milliseconds d) {
    co_await sleep(loop, d);
    co_return a + b;
}

Task<int> thrower(EventLoop& loop) {
    co_await sleep(loop, 1ms);
    throw std::out_of_range("inside the task");
}

Task<std::string> catches(EventLoop& loop) {
    try {
        co_await thrower(loop);
    } catch (const std::out_of_range& e) {
        co_return std::string("caught: ") + e.what();
    }
    co_return "nothing";
}

}  // namespace

TEST_CASE("Task: values and exceptions propagate to the awaiter", "[evloop][coro]") {
    EventLoop loop;
    CHECK(run_until_complete(loop, add_later(loop, 2, 3, 5ms)) == 5);
    CHECK(run_until_complete(loop, catches(loop)) == "caught: inside the task");
    CHECK_THROWS_AS(run_until_complete(loop, thrower(loop)), std::out_of_range);
}

TEST_CASE("gather: results in argument order; as_completed: in finishing order", "[evloop][coro]") {
    EventLoop loop;
    auto make = [&] {
        std::vector<Task<int>> ts;
        for (int ms : {30, 10, 20})
            ts.push_back(add_later(loop, ms, 0, std::chrono::milliseconds(ms)));
        return ts;
    };
    std::vector<int> g = run_until_complete(loop, gather(loop, make()));
    CHECK(g == std::vector<int>{30, 10, 20});

    auto collect = [&]() -> Task<std::vector<int>> {
        AsCompleted<int> ac(loop, make());
        std::vector<int> seen;
        while (!ac.empty())
            seen.push_back(co_await ac.next());
        co_return seen;
    };
    CHECK(run_until_complete(loop, collect()) == std::vector<int>{10, 20, 30});
}

TEST_CASE("wait_for: a late task is cancelled and releases its descriptor", "[evloop][coro]") {
    EventLoop loop;
    Pair p = socket_pair();
    const int fd = p.a.get();
    // The task owns one end and waits for bytes that never come.
    auto reader = [&](WatchedFd sock) -> Task<std::size_t> {
        char buf[64];
        iolab::IoResult r = co_await sock_recv(loop, sock.get(), buf);
        co_return r.bytes;
    };
    Task<std::size_t> t = wait_for(loop, reader(WatchedFd(loop, std::move(p.a))), 50ms);
    CHECK_THROWS_AS(run_until_complete(loop, t), TimeoutError);
    t = Task<std::size_t>();
    CHECK(loop.watched_count() == 0);
    CHECK_FALSE(loop.watching(fd));
    CHECK(::fcntl(fd, F_GETFD) == -1);  // closed
    char c;
    CHECK(::read(p.b.get(), &c, 1) == 0);  // the peer sees EOF
    CHECK(loop.timers_pending() == 0);

    // In time: the value.
    CHECK(run_until_complete(loop, wait_for(loop, add_later(loop, 1, 1, 1ms), 5s)) == 2);
}

TEST_CASE("a task destroyed while suspended leaves no timer or reader behind", "[evloop][coro]") {
    EventLoop loop;
    Pair p = socket_pair();
    {
        std::vector<Task<int>> ts;
        ts.push_back(add_later(loop, 1, 2, 1h));
        auto waiter = [&]() -> Task<int> {
            char buf[8];
            co_await sock_recv(loop, p.a.get(), buf);
            co_return 0;
        };
        ts.push_back(waiter());
        for (auto& t : ts)
            t.start(loop);
        loop.run_once();
        CHECK(loop.timers_pending() == 1);
        CHECK(loop.watching(p.a.get()));
    }
    CHECK_FALSE(loop.watching(p.a.get()));
    loop.call_soon([] {});
    loop.run_once();  // the heap drops cancelled entries lazily, or at once
    CHECK(loop.watched_count() == 0);
}

TEST_CASE("AsyncSemaphore: never more than N holders, FIFO, cancellation-safe", "[evloop][coro]") {
    EventLoop loop;
    AsyncSemaphore sem(loop, 3);
    int inside = 0, most = 0, finished = 0;
    std::vector<int> entry;
    auto worker = [&](int i) -> Task<void> {
        auto permit = co_await sem.acquire();
        entry.push_back(i);
        most = std::max(most, ++inside);
        co_await sleep(loop, 2ms);
        --inside;
        ++finished;
    };
    std::vector<Task<void>> ts;
    for (int i = 0; i < 20; ++i)
        ts.push_back(worker(i));
    run_until_complete(loop, gather(loop, std::move(ts)));
    CHECK(most == 3);
    CHECK(finished == 20);
    for (int i = 0; i < 20; ++i)
        CHECK(entry[static_cast<std::size_t>(i)] == i);
    CHECK(sem.available() == 3);

    // Waiters destroyed while queued give nothing away and take nothing.
    {
        auto p1 = run_until_complete(
            loop, [&]() -> Task<AsyncSemaphore::Permit> { co_return co_await sem.acquire(); }());
        std::vector<Task<void>> queued;
        for (int i = 0; i < 5; ++i) {
            queued.push_back(worker(100 + i));
            queued.back().start(loop);
        }
        loop.run_once();
        CHECK(sem.available() == 0);
        CHECK(sem.waiting() == 3);
    }
    CHECK(sem.waiting() == 0);
    loop.run_once();
    CHECK(sem.available() == 3);
}

TEST_CASE("AsyncQueue: FIFO, put waits while full, get while empty", "[evloop][coro][queue]") {
    EventLoop loop;
    AsyncQueue<int> q(loop, 2);
    std::vector<int> got;
    int puts_done = 0;
    auto producer = [&]() -> Task<void> {
        for (int i = 0; i < 6; ++i) {
            co_await q.put(i);
            ++puts_done;
        }
    };
    auto consumer = [&]() -> Task<void> {
        for (int i = 0; i < 6; ++i) {
            got.push_back(co_await q.get());
            q.task_done();
            co_await sleep(loop, 1ms);  // slower than the producer
        }
    };
    Task<void> p = producer();
    p.start(loop);
    loop.run_once();        // the producer's first step: two puts, the third parks
    CHECK(puts_done == 2);  // full at 2: the third put waits
    CHECK(q.size() == 2);
    CHECK(q.full());
    CHECK_FALSE(q.try_put(99));
    run_until_complete(loop, consumer());
    loop.run_until([&] { return p.done(); });
    CHECK(got == std::vector<int>{0, 1, 2, 3, 4, 5});
    CHECK(q.peak() == 2);
    CHECK(q.unfinished() == 0);
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
}

TEST_CASE("AsyncQueue: join waits until every item is task_done, not just taken",
          "[evloop][coro][queue]") {
    EventLoop loop;
    AsyncQueue<int> q(loop, 10);
    REQUIRE(q.try_put(1));
    REQUIRE(q.try_put(2));
    bool joined = false;
    // A named lambda: a coroutine lambda's captures live in the closure,
    // which must outlive the task.
    auto joiner = [&]() -> Task<void> {
        co_await q.join();
        joined = true;
    };
    Task<void> j = joiner();
    j.start(loop);
    int taken = run_until_complete(loop, q.get());
    taken += run_until_complete(loop, q.get());
    CHECK(taken == 3);
    CHECK(q.empty());
    auto one_round = [&] {  // a round that cannot block: one callback is ready
        loop.call_soon([] {});
        loop.run_once();
    };
    one_round();
    CHECK_FALSE(joined);  // empty, but both items are still being worked on
    q.task_done();
    one_round();
    CHECK_FALSE(joined);
    q.task_done();
    loop.run_until([&] { return j.done(); });
    CHECK(joined);
}

TEST_CASE("AsyncQueue: a getter destroyed while waiting leaves, its wake-up goes on",
          "[evloop][coro][queue]") {
    EventLoop loop;
    AsyncQueue<std::string> q(loop, 4);
    std::vector<std::string> got;
    auto getter = [&]() -> Task<void> { got.push_back(co_await q.get()); };
    std::vector<Task<void>> ts;
    for (int i = 0; i < 3; ++i) {
        ts.push_back(getter());
        ts.back().start(loop);
    }
    loop.run_once();          // all three park
    ts[2] = Task<void>();     // cancelled while parked: leaves the list
    REQUIRE(q.try_put("a"));  // wakes the first getter (next round) ...
    ts[0] = Task<void>();     // ... which is destroyed before it runs
    loop.run_until([&] { return ts[1].done(); });
    CHECK(got == std::vector<std::string>{"a"});  // the wake-up went to the second
    CHECK(ts[1].done());
    CHECK(q.empty());
}

TEST_CASE("to_thread: the awaitable executor; the loop keeps running meanwhile", "[evloop][coro]") {
    EventLoop loop;
    int ticks = 0;
    auto ticker = [&]() -> Task<void> {
        for (;;) {
            co_await sleep(loop, 5ms);
            ++ticks;
        }
    };
    Task<void> tick = ticker();
    tick.start(loop);
    auto main_task = [&]() -> Task<int> {
        int v = co_await to_thread(loop, [] {
            std::this_thread::sleep_for(100ms);
            return 7;
        });
        co_return v;
    };
    CHECK(run_until_complete(loop, main_task()) == 7);
    CHECK(ticks >= 5);  // 100 ms of blocking, on a pool thread: the ticker ran
    auto failing = [&]() -> Task<int> {
        co_return co_await to_thread(loop, []() -> int { throw std::invalid_argument("x"); });
    };
    CHECK_THROWS_AS(run_until_complete(loop, failing()), std::invalid_argument);
}

TEST_CASE("a descriptor epoll refuses is an error at registration", "[evloop]") {
    EventLoop loop;
    iolab::Fd file(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
    REQUIRE(file);
    CHECK_THROWS_AS(loop.add_reader(file.get(), [] {}), iolab::SysError);  // EPERM
    CHECK_FALSE(loop.watching(file.get()));
}
