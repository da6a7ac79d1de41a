#!/usr/bin/env python3
"""A shaped TCP link of the bench's own: a relay on 127.0.0.1 in front of a
server (the bench's sshd), that delays each direction and paces it to a rate,
and counts the bytes each way ("bytes on the wire": what the client and the
server send each other, the SSH stream as it is, compression and encryption
included). This kernel has no netem; this stands in for it.

Each listening port is a link of its own (one per host alias, as each host of
a fleet has its own path): per direction, bytes are serialized at `--rate-mbit`
behind what is already queued (a token bucket with no burst: one bottleneck
of that rate), then delivered `--delay-ms` later (the one-way propagation
delay; a round trip is twice that). Reading from a side pauses while more
than `--buffer-kb` are queued in that direction, so the sender sees
backpressure as it would from a full link. With --delay-ms 0 and
--rate-mbit 0 it is a plain counting relay (loopback).

A control port answers one line, `stats`, with a JSON object of the
counters: {"up": bytes client->server, "down": bytes server->client,
"connections": how many were accepted, "ports": {port: {...}}}.

    relay.py --target 127.0.0.1:22 --listen 0 --listen 0 --delay-ms 20 --rate-mbit 50 --control 0

prints one JSON line when ready: {"ports": [...], "control": port}. It runs
until its stdin closes (or SIGTERM): the bench owns it.
"""

import argparse
import asyncio
import collections
import json
import signal
import sys
import time

SEGMENT = 8192  # a big read is paced as segments of this size, so its head arrives before its tail


class Counters:
    def __init__(self):
        self.up = 0
        self.down = 0
        self.connections = 0

    def as_dict(self):
        return {"up": self.up, "down": self.down, "connections": self.connections}


class Direction:
    """One direction of one connection: read from `reader`, deliver to `writer`
    after the link's serialization and propagation delay."""

    def __init__(self, reader, writer, delay, rate_bps, buffer_bytes, count):
        self.reader = reader
        self.writer = writer
        self.delay = delay
        self.rate = rate_bps  # bits per second; 0: unlimited
        self.buffer = buffer_bytes
        self.count = count  # callable(n): adds n to this direction's counter
        self.queue = collections.deque()  # (deliver_at, bytes)
        self.queued = 0
        self.next_free = 0.0  # when the link finishes serializing what is queued
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.eof = False

    async def pump_in(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.room.wait()
                data = await self.reader.read(65536)
                if not data:
                    break
                self.count(len(data))
                if not self.delay and not self.rate:
                    self.queue.append((0.0, data))
                    self.queued += len(data)
                else:
                    now = loop.time()
                    for i in range(0, len(data), SEGMENT):
                        seg = data[i:i + SEGMENT]
                        start = max(now, self.next_free)
                        self.next_free = start + (len(seg) * 8 / self.rate if self.rate else 0.0)
                        self.queue.append((self.next_free + self.delay, seg))
                        self.queued += len(seg)
                if self.queued > self.buffer:
                    self.room.clear()
                self.wake.set()
        except (ConnectionError, OSError):
            pass
        self.eof = True
        self.wake.set()

    async def pump_out(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.queue:
                    if self.eof:
                        break
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                due = self.queue[0][0]
                now = loop.time()
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                out = []
                while self.queue and self.queue[0][0] <= now:
                    out.append(self.queue.popleft()[1])
                n = sum(len(b) for b in out)
                self.writer.write(b"".join(out))
                await self.writer.drain()
                self.queued -= n
                if self.queued <= self.buffer:
                    self.room.set()
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (ConnectionError, OSError):
            pass


class Relay:
    def __init__(self, target, delay, rate_bps, buffer_bytes):
        self.target = target
        self.delay = delay
        self.rate = rate_bps
        self.buffer = buffer_bytes
        self.total = Counters()
        self.by_port = {}

    async def handle(self, port, client_reader, client_writer):
        counters = self.by_port[port]
        counters.connections += 1
        self.total.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return

        def add_up(n):
            counters.up += n
            self.total.up += n

        def add_down(n):
            counters.down += n
            self.total.down += n

        up = Direction(client_reader, server_writer, self.delay, self.rate, self.buffer, add_up)
        down = Direction(server_reader, client_writer, self.delay, self.rate, self.buffer, add_down)
        try:
            await asyncio.gather(up.pump_in(), up.pump_out(), down.pump_in(), down.pump_out())
        except asyncio.CancelledError:
            pass  # the relay is ending
        for w in (server_writer, client_writer):
            w.close()

    async def control(self, reader, writer):
        try:
            line = await reader.readline()
            if line.strip() == b"stats":
                body = dict(self.total.as_dict(), t=time.time(),
                            ports={str(p): c.as_dict() for p, c in self.by_port.items()})
                writer.write(json.dumps(body).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


async def serve(args):
    host, port = args.target.rsplit(":", 1)
    relay = Relay((host, int(port)), args.delay_ms / 1000, args.rate_mbit * 1e6, args.buffer_kb * 1024)
    servers, ports = [], []
    for want in args.listen:
        # Bound first, so the handler knows its port.
        box = {}
        server = await asyncio.start_server(
            lambda r, w, box=box: relay.handle(box["port"], r, w), "127.0.0.1", want)
        box["port"] = server.sockets[0].getsockname()[1]
        relay.by_port[box["port"]] = Counters()
        servers.append(server)
        ports.append(box["port"])
    control = await asyncio.start_server(relay.control, "127.0.0.1", args.control)
    print(json.dumps({"ports": ports, "control": control.sockets[0].getsockname()[1]}), flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    # The owner closes our stdin to end us.
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.buffer.read1(4096) else None)
    await done.wait()
    for s in servers + [control]:
        s.close()


def stats(control_port, timeout=5):
    """The relay's counters (for the bench and its callback plugin)."""
    import socket
    with socket.create_connection(("127.0.0.1", control_port), timeout=timeout) as s:
        s.sendall(b"stats\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="HOST:PORT of the server")
    p.add_argument("--listen", type=int, action="append", default=[], help="a port on 127.0.0.1 (0: any free one)")
    p.add_argument("--control", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay")
    p.add_argument("--rate-mbit", type=float, default=50.0, help="per direction; 0: unlimited")
    p.add_argument("--buffer-kb", type=int, default=512, help="bytes queued per direction before reading pauses")
    args = p.parse_args()
    if not args.listen:
        args.listen = [0]
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
