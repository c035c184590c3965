#!/usr/bin/python3
"""peer-asyncio -- the suite's echo server in Python's asyncio, the way a
Python programmer writes it, on asyncio's own loop or on uvloop's.

A yardstick for lab 06's loop-echo (scripts/bench-event-loop.sh), not a lab
program. Built into <build>/bin/peer-asyncio (a copy of
bench/peers/echo_asyncio.py). It runs on /usr/bin/python3, Debian's, where
python3-uvloop installs (a python3 earlier in PATH, from pyenv or a venv,
would not have it).

Usage: peer-asyncio [--api streams|protocol] [--loop asyncio|uvloop]
                    [--host 127.0.0.1] [--port 0] [--max-clients N] [-v]

  --api streams   asyncio.start_server: a coroutine per client,
                  `data = await reader.read(65536)`, `writer.write(data)`,
                  `await writer.drain()` (the backpressure: drain waits while
                  the transport holds more than its high-water mark, 64 KiB).
  --api protocol  loop.create_server with an asyncio.Protocol: callbacks,
                  data_received writes straight to the transport;
                  pause_writing/resume_writing stop and restart reading (the
                  bound: the transport's high-water mark).
  --loop uvloop   the same code on uvloop (libuv under asyncio's API;
                  python3-uvloop).

Conventions of the suite: the first stdout line is "listening on HOST:PORT";
SIGINT/SIGTERM close every connection, print
"summary: connections=N refused=N bytes_in=N bytes_out=N" and exit 0; a usage
error is one line "peer-asyncio: ..." and exit 2; a runtime error (bind) is
one line naming the call, the address and the errno text, exit 1; exit 4 when
uvloop is asked for and not installed.
"""
import argparse
import asyncio
import signal
import socket
import sys

PROG = "peer-asyncio"
READ_SIZE = 65536


class Stats:
    def __init__(self):
        self.connections = 0
        self.refused = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.open = set()  # transports (protocol) or writers (streams)

    def line(self):
        return (f"summary: connections={self.connections} refused={self.refused} "
                f"bytes_in={self.bytes_in} bytes_out={self.bytes_out}")


class Args(argparse.ArgumentParser):
    def error(self, message):
        print(f"{PROG}: {message}", file=sys.stderr)
        sys.exit(2)


def log(args, text):
    if args.verbose:
        print(text, file=sys.stderr, flush=True)


def peer_name(transport):
    peer = transport.get_extra_info("peername")
    if not peer:
        return "?"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def nodelay(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---- streams ---------------------------------------------------------------

def streams_handler(args, stats):
    async def handle(reader, writer):
        peer = peer_name(writer.transport)
        if len(stats.open) >= args.max_clients:
            stats.refused += 1
            log(args, f"refused {peer}: --max-clients reached")
            writer.close()
            return
        stats.connections += 1
        stats.open.add(writer)
        nodelay(writer.transport)
        log(args, f"connect {peer}")
        why = "done"
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                stats.bytes_in += len(data)
                writer.write(data)
                stats.bytes_out += len(data)  # queued: the transport writes it or fails
                await writer.drain()
        except (ConnectionError, OSError) as e:
            why = f"read/write {peer}: {e.strerror or e}"
        except asyncio.CancelledError:
            why = "server stopping"
        finally:
            stats.open.discard(writer)
            writer.close()
            log(args, f"disconnect {peer} ({why})")
    return handle


# ---- protocol --------------------------------------------------------------

class EchoProtocol(asyncio.Protocol):
    def __init__(self, args, stats):
        self.args = args
        self.stats = stats
        self.transport = None
        self.peer = "?"

    def connection_made(self, transport):
        self.peer = peer_name(transport)
        if len(self.stats.open) >= self.args.max_clients:
            self.stats.refused += 1
            log(self.args, f"refused {self.peer}: --max-clients reached")
            transport.close()
            return
        self.transport = transport
        self.stats.connections += 1
        self.stats.open.add(transport)
        nodelay(transport)
        log(self.args, f"connect {self.peer}")

    def data_received(self, data):
        self.stats.bytes_in += len(data)
        self.transport.write(data)
        self.stats.bytes_out += len(data)

    # The transport's buffer passed its high-water mark: stop reading until it
    # drains below the low-water mark (backpressure, asyncio's way).
    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        return False  # the transport closes itself once the echo is written

    def connection_lost(self, exc):
        if self.transport is None:
            return
        self.stats.open.discard(self.transport)
        why = "done" if exc is None else f"{exc}"
        log(self.args, f"disconnect {self.peer} ({why})")


# ---- main ------------------------------------------------------------------

async def serve(args):
    loop = asyncio.get_running_loop()
    stats = Stats()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.api == "streams":
            server = await asyncio.start_server(streams_handler(args, stats), args.host,
                                                args.port, backlog=4096)
        else:
            server = await loop.create_server(lambda: EchoProtocol(args, stats), args.host,
                                              args.port, backlog=4096)
    except OSError as e:
        print(f"{PROG}: bind {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {f'[{host}]' if ':' in host else host}:{port}", flush=True)
    await stop.wait()
    server.close()
    for t in list(stats.open):
        t.close()  # a StreamWriter or a transport: both close(); the echo in flight is lost
    # Let the handlers see their connections end (they log and leave the set).
    for _ in range(50):
        if not stats.open:
            break
        await asyncio.sleep(0.01)
    print(stats.line(), flush=True)
    return 0


def main():
    p = Args(prog=PROG, description="Echo server on asyncio or uvloop "
             "(a yardstick for lab 06's loop-echo)",
             epilog="Exit codes: 0 stopped by SIGINT or SIGTERM (after the summary line); "
                    "1 runtime error; 2 usage error; 4 uvloop not installed")
    p.add_argument("--api", choices=["streams", "protocol"], default="streams")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-clients", type=int, default=10000)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Log every connection to stderr: 'connect PEER', "
                        "'disconnect PEER (REASON)', 'refused PEER: REASON'")
    args = p.parse_args()
    if not 0 <= args.port <= 65535:
        p.error(f"--port {args.port}: not in 0..65535")
    if args.max_clients < 1:
        p.error("--max-clients must be at least 1")
    if args.loop == "uvloop":
        try:
            import uvloop  # pylint: disable=import-outside-toplevel
        except ImportError:
            print(f"{PROG}: uvloop is not installed (apt-get install python3-uvloop)",
                  file=sys.stderr)
            return 4
        uvloop.install()
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
