"""What the vespid worker costs in front of a model server, beside the floor and no proxy.

One run starts a stand-in backend (``bench/backend.py``), a minimal aiohttp
passthrough proxy (``bench/minimal_proxy.py``) and a vespid worker with signatures
checked, each as a subprocess on a free 127.0.0.1 port, and measures, for direct
calls, the minimal proxy and the worker, the worker twice: with requests tagged
with HMAC-SHA256 under its own key (what vespid's control plane sends the workers it
starts) and with requests RSA-signed (workers without a key, or
``VESPID_REQUEST_SIGNING=rsa``):

1. throughput and p50/p99 latency of tiny JSON answers at 32 concurrent connections;
2. p50/p99 latency at concurrency 1 (the latency the proxy adds);
3. time to the first byte of a streamed (SSE) answer;
4. CPU time each proxy process spends per request, from /proc/<pid>/stat.

Phases are split into rounds and the targets take turns within each round, so a
slow spell of the machine falls on every target alike. See bench/README.md.

Usage: ``python bench/proxy_overhead.py [--requests N] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

import vespid
from vespid.protocol.signing import (
    Signer,
    encode_request_key,
    generate_private_key,
    public_key_pem,
    worker_request_key,
)
from vespid.servers.process import ChildProcess, free_port, wait_http
from vespid.worker.settings import WorkerSettings, env_name

HERE: Final = Path(__file__).resolve().parent
JSON_HEADERS: Final = {"Content-Type": "application/json"}
TINY_PAYLOAD: Final = {"prompt": "Say ok.", "max_tokens": 1, "temperature": 0}
STREAM_PAYLOAD: Final = {"prompt": "Say ok.", "max_tokens": 4, "stream": True}
STREAM_EVENTS: Final = 4
STREAM_INTERVAL_MS: Final = 20.0
READY_TIMEOUT_S: Final = 30.0
PHASE_TIMEOUT_S: Final = 120.0
REQUEST_TIMEOUT_S: Final = 30.0
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")

WORKER_VARS: Final = frozenset(env_name(f) for f in WorkerSettings.model_fields)

DIRECT: Final = "direct"
MINIMAL: Final = "minimal"
WORKER: Final = "worker"  # HMAC-tagged requests, as vespid's control plane routes them
WORKER_RSA: Final = "worker_rsa"  # RSA-signed requests
WORKERS: Final = (WORKER, WORKER_RSA)
LABELS: Final = {
    DIRECT: "direct",
    MINIMAL: "minimal proxy",
    WORKER: "vespid worker",
    WORKER_RSA: "vespid worker, RSA",
}


# -- measuring -----------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads, no children), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    # Field 2 (comm) may hold spaces and parentheses: count from the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    """Resident memory of process ``pid``, in MiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class Batch:
    """What one burst of requests against one target gave."""

    latencies_s: list[float]
    wall_s: float
    errors: int
    first_error: str | None


@dataclass
class Tally:
    """Everything measured for one target, summed over rounds."""

    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    proxy_cpu_s: float = 0.0
    backend_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    round_rps: list[float] = field(default_factory=list)
    cpu_measured: bool = False  # CPU is read in the concurrency phase only
    has_proxy: bool = False  # direct calls have no proxy CPU to report

    def add(self, batch: Batch) -> None:
        self.latencies_s.extend(batch.latencies_s)
        self.wall_s += batch.wall_s
        self.requests += len(batch.latencies_s)
        self.errors += batch.errors
        self.first_error = self.first_error or batch.first_error
        if batch.wall_s > 0:
            self.round_rps.append(len(batch.latencies_s) / batch.wall_s)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        nan = float("nan")
        per_req = 1e6 / self.requests if self.requests else nan
        cpu, proxy = self.cpu_measured, self.cpu_measured and self.has_proxy
        return {
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "rps": _div(self.requests, self.wall_s),
            "round_rps": [round(r, 1) for r in self.round_rps],
            "p50_ms": percentile(lat, 50) * 1e3,
            "p90_ms": percentile(lat, 90) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3,
            "max_ms": (lat[-1] if lat else nan) * 1e3,
            "proxy_cpu_us_per_req": self.proxy_cpu_s * per_req if proxy else nan,
            "proxy_busy_pct": _div(100.0 * self.proxy_cpu_s, self.wall_s) if proxy else nan,
            "backend_cpu_us_per_req": self.backend_cpu_s * per_req if cpu else nan,
            "client_cpu_us_per_req": self.client_cpu_s * per_req if cpu else nan,
        }


async def run_batch(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    expect: bytes,
) -> Batch:
    """POST every body to ``url`` over ``concurrency`` lanes; time each request."""
    latencies = [0.0] * len(bodies)
    errors: list[str] = []
    indices = iter(range(len(bodies)))  # shared by the lanes: each takes the next index

    async def lane() -> None:
        for i in indices:
            started = time.perf_counter()
            try:
                async with session.post(url, data=bodies[i], headers=JSON_HEADERS) as resp:
                    data = await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                latencies[i] = time.perf_counter() - started
                continue
            latencies[i] = time.perf_counter() - started
            if status != 200 or data != expect:
                errors.append(f"status {status}: {data[:200]!r}")

    started = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await asyncio.gather(*(lane() for _ in range(min(concurrency, len(bodies)))))
    wall = time.perf_counter() - started
    return Batch(latencies, wall, len(errors), errors[0] if errors else None)


@dataclass
class StreamTally:
    ttfb_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def summary(self) -> dict[str, Any]:
        ttfb, total = sorted(self.ttfb_s), sorted(self.total_s)
        return {
            "streams": len(self.ttfb_s),
            "errors": self.errors,
            "first_error": self.first_error,
            "ttfb_p50_ms": percentile(ttfb, 50) * 1e3,
            "ttfb_p99_ms": percentile(ttfb, 99) * 1e3,
            "complete_p50_ms": percentile(total, 50) * 1e3,
            "chunks_p50": percentile(sorted(self.chunks), 50) if self.chunks else float("nan"),
        }


async def run_streams(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Sequence[bytes],
    expect: bytes,
    tally: StreamTally,
) -> None:
    """One stream at a time: time to the first body byte, and to the end of the stream."""
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        for body in bodies:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
                    first = await resp.content.readany()
                    first_at = time.perf_counter()
                    pieces, chunks = [first], 1
                    while piece := await resp.content.readany():
                        pieces.append(piece)
                        chunks += 1
                    done_at = time.perf_counter()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                tally.errors += 1
                tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
                continue
            data = b"".join(pieces)
            if status != 200 or data != expect:
                tally.errors += 1
                tally.first_error = tally.first_error or f"status {status}: {data[:200]!r}"
                continue
            tally.ttfb_s.append(first_at - started)
            tally.total_s.append(done_at - started)
            tally.chunks.append(chunks)


# -- the targets -----------------------------------------------------------------


@dataclass
class Target:
    """One thing requests are sent to, and how to build its request bodies."""

    name: str
    base_url: str
    pid: int | None  # the proxy process, None for direct calls
    make_body: Callable[[dict[str, Any], str], bytes]  # (payload, endpoint) -> body

    def bodies(self, payload: dict[str, Any], endpoint: str, n: int) -> list[bytes]:
        return [self.make_body(payload, endpoint) for _ in range(n)]


def proxy_processes(targets: Sequence[Target]) -> list[tuple[str, int]]:
    """(name, pid) of each proxy process once: the RSA target is the same worker process."""
    return [(t.name, t.pid) for t in targets if t.pid is not None and t.name != WORKER_RSA]


class Envelopes:
    """Request bodies in vespid's envelope, signed the way the router signs them."""

    def __init__(self, signer: Signer, worker_url: str, worker_key: bytes) -> None:
        self._signer = signer
        self._worker_url = worker_url
        self._worker_key = worker_key
        self._n = 0
        self._fixed: dict[str, bytes] = {}

    def _envelope(self, payload: dict[str, Any], endpoint: str, key: bytes | None) -> bytes:
        self._n += 1
        auth = self._signer.auth_data(
            url=self._worker_url,
            cost=1,
            endpoint=endpoint,
            reqnum=self._n,
            request_idx=self._n,
            worker_key=key,
        )
        return orjson.dumps({"auth_data": auth, "payload": payload})

    def tagged(self, payload: dict[str, Any], endpoint: str) -> bytes:
        """A fresh HMAC tag under the worker's key every time (a tag is used once)."""
        return self._envelope(payload, endpoint, self._worker_key)

    def signed(self, payload: dict[str, Any], endpoint: str) -> bytes:
        """A fresh RSA signature every time: the worker refuses a signature it has seen."""
        return self._envelope(payload, endpoint, None)

    def fixed(self, payload: dict[str, Any], endpoint: str) -> bytes:
        """One signed body per endpoint, reused: same size, for a proxy that checks nothing."""
        if endpoint not in self._fixed:
            self._fixed[endpoint] = self.signed(payload, endpoint)
        return self._fixed[endpoint]


def direct_body(payload: dict[str, Any], endpoint: str) -> bytes:
    return orjson.dumps(payload)


# -- processes -----------------------------------------------------------------


async def wait_tcp(port: int, proc: ChildProcess, timeout_s: float) -> None:
    """Until 127.0.0.1:port accepts a connection; RuntimeError if ``proc`` exits first."""
    async with asyncio.timeout(timeout_s):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.returncode} while starting")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


async def wait_worker_ready(port: int, proc: ChildProcess, timeout_s: float) -> None:
    """Until the worker's /metrics says ``vespid_worker_ready 1.0``."""
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout_s):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode} while starting")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if b"vespid_worker_ready 1.0" in await resp.read():
                        return
            await asyncio.sleep(0.05)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# -- the run -------------------------------------------------------------------


@dataclass
class Options:
    requests: int
    concurrency: int
    sequential: int
    streams: int
    warmup: int
    rounds: int
    json_path: Path | None


async def interleaved(
    targets: Sequence[Target],
    total: int,
    rounds: int,
    run: Callable[[Target, int], Awaitable[None]],
) -> None:
    """Split ``total`` into rounds; in each, every target takes a turn (order rotates)."""
    for r, n in enumerate(split_evenly(total, rounds)):
        for k in range(len(targets)):
            await run(targets[(r + k) % len(targets)], n)


class Bench:
    """The measuring itself, over one client session shared by every phase."""

    def __init__(
        self,
        opts: Options,
        session: aiohttp.ClientSession,
        targets: Sequence[Target],
        backend_pid: int,
    ) -> None:
        self.opts = opts
        self.session = session
        self.targets = targets
        self.backend_pid = backend_pid
        self.tiny_expect = b""
        self.stream_expect = b""
        self.replay_status: dict[str, int] = {}

    async def smoke_check(self) -> None:
        """Every target answers exactly what the backend answers (status, type, body)."""
        direct = self.targets[0]
        url = direct.base_url
        body = direct_body(TINY_PAYLOAD, "/tiny")
        async with self.session.post(url + "/tiny", data=body, headers=JSON_HEADERS) as resp:
            self.tiny_expect = await resp.read()
            expect_ctype = resp.headers.get("Content-Type")
        body = direct_body(STREAM_PAYLOAD, "/stream")
        async with self.session.post(url + "/stream", data=body, headers=JSON_HEADERS) as resp:
            self.stream_expect = await resp.read()
            if resp.headers.get("Content-Type") != "text/event-stream":
                raise RuntimeError(f"backend /stream answered {resp.headers.get('Content-Type')}")
        for t in self.targets:
            [body] = t.bodies(TINY_PAYLOAD, "/tiny", 1)
            async with self.session.post(
                t.base_url + "/tiny", data=body, headers=JSON_HEADERS
            ) as r:
                got, ctype = await r.read(), r.headers.get("Content-Type")
            if r.status != 200 or got != self.tiny_expect or ctype != expect_ctype:
                raise RuntimeError(f"{t.name}: smoke check failed: {r.status} {ctype} {got!r}")
            if t.name in WORKERS:
                # Signatures are checked for real: the same signed body again is a replay.
                async with self.session.post(
                    t.base_url + "/tiny", data=body, headers=JSON_HEADERS
                ) as r:
                    self.replay_status[t.name] = r.status
                if r.status == 200:
                    raise RuntimeError(f"{t.name}: the worker accepted a replayed signature")

    async def idle_cpu(self, seconds: float = 1.0) -> dict[str, float]:
        """CPU ms per second each proxy spends with no traffic (should be about 0)."""
        proxies = proxy_processes(self.targets)
        before = {name: proc_cpu_s(pid) for name, pid in proxies}
        await asyncio.sleep(seconds)
        return {name: (proc_cpu_s(pid) - before[name]) * 1e3 / seconds for name, pid in proxies}

    async def warm(self, t: Target, n: int, concurrency: int) -> None:
        """Untimed requests that open connections and warm caches; any error stops the run."""
        if n <= 0:
            return
        bodies = t.bodies(TINY_PAYLOAD, "/tiny", n)
        batch = await run_batch(
            self.session, t.base_url + "/tiny", bodies, concurrency, self.tiny_expect
        )
        if batch.errors:
            raise RuntimeError(f"{t.name}: {batch.errors} errors in warm-up: {batch.first_error}")

    async def concurrent(self) -> dict[str, Tally]:
        """Phase 1: throughput, latency and CPU per request at full concurrency."""
        opts = self.opts
        tallies = {
            t.name: Tally(cpu_measured=True, has_proxy=t.pid is not None) for t in self.targets
        }

        async def turn(t: Target, n: int) -> None:
            bodies = t.bodies(TINY_PAYLOAD, "/tiny", n)  # signed before the clock starts
            await self.warm(t, opts.concurrency, opts.concurrency)
            gc.collect()
            gc.disable()
            try:
                proxy0 = proc_cpu_s(t.pid) if t.pid is not None else 0.0
                backend0, client0 = proc_cpu_s(self.backend_pid), time.process_time()
                batch = await run_batch(
                    self.session, t.base_url + "/tiny", bodies, opts.concurrency, self.tiny_expect
                )
                client1, backend1 = time.process_time(), proc_cpu_s(self.backend_pid)
                proxy1 = proc_cpu_s(t.pid) if t.pid is not None else 0.0
            finally:
                gc.enable()
            tally = tallies[t.name]
            tally.add(batch)
            tally.proxy_cpu_s += proxy1 - proxy0
            tally.backend_cpu_s += backend1 - backend0
            tally.client_cpu_s += client1 - client0

        await interleaved(self.targets, opts.requests, opts.rounds, turn)
        return tallies

    async def sequential(self) -> dict[str, Tally]:
        """Phase 2: one request at a time."""
        opts, tallies = self.opts, {t.name: Tally() for t in self.targets}

        async def turn(t: Target, n: int) -> None:
            bodies = t.bodies(TINY_PAYLOAD, "/tiny", n)
            await self.warm(t, 10, 1)
            gc.collect()
            gc.disable()
            try:
                batch = await run_batch(
                    self.session, t.base_url + "/tiny", bodies, 1, self.tiny_expect
                )
            finally:
                gc.enable()
            tallies[t.name].add(batch)

        await interleaved(self.targets, opts.sequential, opts.rounds, turn)
        return tallies

    async def streaming(self) -> dict[str, StreamTally]:
        """Phase 3: time to the first byte of an SSE answer, one stream at a time."""
        opts, tallies = self.opts, {t.name: StreamTally() for t in self.targets}

        async def turn(t: Target, n: int) -> None:
            bodies = t.bodies(STREAM_PAYLOAD, "/stream", n + 1)
            url, tally = t.base_url + "/stream", tallies[t.name]
            warm = StreamTally()  # the first stream of a turn is not timed
            await run_streams(self.session, url, bodies[:1], self.stream_expect, warm)
            tally.errors += warm.errors
            tally.first_error = tally.first_error or warm.first_error
            await run_streams(self.session, url, bodies[1:], self.stream_expect, tally)

        await interleaved(self.targets, opts.streams, opts.rounds, turn)
        return tallies


async def measure(
    opts: Options, targets: Sequence[Target], backend_pid: int, log: Callable[[str], None]
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=2 * opts.concurrency, keepalive_timeout=120)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    ) as session:
        bench = Bench(opts, session, targets, backend_pid)
        await bench.smoke_check()
        idle = await bench.idle_cpu()
        log(f"warm-up: {opts.warmup} requests per target at concurrency {opts.concurrency}")
        for t in targets:
            await bench.warm(t, opts.warmup, opts.concurrency)
        log(
            f"phase 1: {opts.requests} requests per target at concurrency {opts.concurrency}, "
            f"{opts.rounds} rounds"
        )
        conc = await bench.concurrent()
        log(f"phase 2: {opts.sequential} sequential requests per target")
        seq = await bench.sequential()
        log(
            f"phase 3: {opts.streams} streams per target ({STREAM_EVENTS} SSE events, "
            f"{STREAM_INTERVAL_MS:g} ms apart)"
        )
        streams = await bench.streaming()
    return {
        "worker_replay_status": bench.replay_status,
        "idle_cpu_ms_per_s": idle,
        "rss_mib_after": {name: proc_rss_mib(pid) for name, pid in proxy_processes(targets)},
        "concurrent": {name: tally.summary() for name, tally in conc.items()},
        "sequential": {name: tally.summary() for name, tally in seq.items()},
        "streaming": {name: tally.summary() for name, tally in streams.items()},
    }


def distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    for _ in range(100):
        port = free_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("could not find free ports on 127.0.0.1")


async def run(opts: Options, out: Callable[[str], None]) -> int:
    """Start the servers, measure, print; returns the exit status."""

    def progress(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="vespid-bench-") as tmp:
        base = Path(tmp)
        key = generate_private_key()
        key_file = base / "router.pub.pem"
        key_file.write_bytes(public_key_pem(key))
        worker_key = worker_request_key(os.urandom(32), 1)
        backend_port, minimal_port, worker_port = distinct_ports(3)
        backend_url = f"http://127.0.0.1:{backend_port}"
        worker_url = f"http://127.0.0.1:{worker_port}"
        backend = ChildProcess.python(
            "backend",
            str(HERE / "backend.py"),
            "--port",
            str(backend_port),
            "--events",
            str(STREAM_EVENTS),
            "--interval-ms",
            str(STREAM_INTERVAL_MS),
            log_path=base / "backend.log",
        )
        minimal = ChildProcess.python(
            "minimal proxy",
            str(HERE / "minimal_proxy.py"),
            "--port",
            str(minimal_port),
            "--backend",
            backend_url,
            log_path=base / "minimal.log",
        )
        worker_env = {
            "BACKEND_URL": backend_url,
            "WORKER_PORT": str(worker_port),
            "VESPID_HOST": "127.0.0.1",
            "PUBLIC_IPADDR": "127.0.0.1",
            "VESPID_PUBLIC_KEY_FILE": str(key_file),
            "VESPID_REQUEST_KEY": encode_request_key(worker_key),
            "VESPID_MAX_PERF": "1000000",
            "MAX_WAIT_TIME": "1000",
            "VESPID_LOG_LEVEL": "warning",
            "HEALTHCHECK_ENDPOINT": "/health",
            "UNSECURED": "false",
            "VESPID_CACHE_DIR": str(base / "cache"),
        }
        worker = ChildProcess.python(
            "vespid worker", "-m", "vespid.worker", env=worker_env, log_path=base / "worker.log"
        )
        # Settings inherited from this shell (UNSECURED, VESPID_*) must not change what is
        # measured: the worker sees only the bench's own worker settings.
        worker.env = {
            k: v
            for k, v in worker.env.items()
            if k in worker_env or not (k in WORKER_VARS or k.startswith("VAST_TCP_PORT"))
        }
        procs = [backend, minimal, worker]
        try:
            for proc in procs:
                await proc.start()
            await wait_http(backend_url + "/health", timeout_s=READY_TIMEOUT_S, proc=backend)
            await wait_tcp(minimal_port, minimal, READY_TIMEOUT_S)
            await wait_worker_ready(worker_port, worker, READY_TIMEOUT_S)
            assert minimal.pid is not None
            assert worker.pid is not None
            assert backend.pid is not None
            envelopes = Envelopes(Signer(key, ttl_s=300), worker_url, worker_key)
            targets = [
                Target(DIRECT, backend_url, None, direct_body),
                Target(MINIMAL, f"http://127.0.0.1:{minimal_port}", minimal.pid, envelopes.fixed),
                Target(WORKER, worker_url, worker.pid, envelopes.tagged),
                Target(WORKER_RSA, worker_url, worker.pid, envelopes.signed),
            ]
            progress(
                f"backend pid {backend.pid}, minimal proxy pid {minimal.pid}, "
                f"worker pid {worker.pid}"
            )
            started = time.monotonic()
            results = await measure(opts, targets, backend.pid, progress)
            results["duration_s"] = round(time.monotonic() - started, 1)
        except Exception:
            for proc in procs:
                if proc.log_path is not None and (tail := log_tail(proc.log_path)):
                    progress(f"--- last lines of {proc.name}'s log ---\n{tail}")
            raise
        finally:
            for proc in reversed(procs):
                await proc.stop()
    results["settings"] = {
        "requests": opts.requests,
        "concurrency": opts.concurrency,
        "sequential": opts.sequential,
        "streams": opts.streams,
        "warmup": opts.warmup,
        "rounds": opts.rounds,
        "stream_events": STREAM_EVENTS,
        "stream_interval_ms": STREAM_INTERVAL_MS,
    }
    results["environment"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "vespid": vespid.__version__,
        "uvloop": _uvloop_version(),
        "clk_tck": CLK_TCK,
    }
    results["ratios"] = ratios(results)
    out(render(results))
    if opts.json_path is not None:
        opts.json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        out(f"results written to {opts.json_path}")
    errors = sum(
        int(results[phase][name]["errors"])
        for phase in ("concurrent", "sequential", "streaming")
        for name in results[phase]
    )
    return 1 if errors else 0


def _uvloop_version() -> str | None:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return None


# -- the report ----------------------------------------------------------------


def ratios(results: dict[str, Any]) -> dict[str, float]:
    conc, seq, st = results["concurrent"], results["sequential"], results["streaming"]
    rsa = {
        "worker_rsa_rps_over_direct": _div(conc[WORKER_RSA]["rps"], conc[DIRECT]["rps"]),
        "worker_rsa_cpu_over_minimal_cpu": _div(
            conc[WORKER_RSA]["proxy_cpu_us_per_req"], conc[MINIMAL]["proxy_cpu_us_per_req"]
        ),
        "worker_rsa_c1_p50_minus_direct_ms": seq[WORKER_RSA]["p50_ms"] - seq[DIRECT]["p50_ms"],
    }
    return rsa | {
        "worker_rps_over_direct": _div(conc[WORKER]["rps"], conc[DIRECT]["rps"]),
        "worker_rps_over_minimal": _div(conc[WORKER]["rps"], conc[MINIMAL]["rps"]),
        "minimal_rps_over_direct": _div(conc[MINIMAL]["rps"], conc[DIRECT]["rps"]),
        "worker_cpu_over_minimal_cpu": _div(
            conc[WORKER]["proxy_cpu_us_per_req"], conc[MINIMAL]["proxy_cpu_us_per_req"]
        ),
        "worker_c1_p50_minus_direct_ms": seq[WORKER]["p50_ms"] - seq[DIRECT]["p50_ms"],
        "minimal_c1_p50_minus_direct_ms": seq[MINIMAL]["p50_ms"] - seq[DIRECT]["p50_ms"],
        "worker_ttfb_p50_minus_direct_ms": st[WORKER]["ttfb_p50_ms"] - st[DIRECT]["ttfb_p50_ms"],
        "minimal_ttfb_p50_minus_direct_ms": st[MINIMAL]["ttfb_p50_ms"] - st[DIRECT]["ttfb_p50_ms"],
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _f(value: float, digits: int = 2) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN -> n/a


def _us(ms: float) -> str:
    return f"{ms * 1e3:+.0f} µs"


def render(results: dict[str, Any]) -> str:
    s, env = results["settings"], results["environment"]
    conc, seq, st = results["concurrent"], results["sequential"], results["streaming"]
    r = results["ratios"]
    names = [DIRECT, MINIMAL, WORKER, WORKER_RSA]
    tick_us = 1e6 / env["clk_tck"]
    replays = results["worker_replay_status"]
    cpu_err = tick_us * s["rounds"] / max(conc[WORKER]["requests"], 1)
    lines = [
        f"vespid proxy overhead -- {env['cpus']} CPUs, Python {env['python']}, "
        f"aiohttp {env['aiohttp']}, uvloop {env['uvloop']}, vespid {env['vespid']}; "
        f"run took {results['duration_s']} s",
        "signatures checked: every worker request carries its own HMAC-SHA256 tag under the "
        "worker's key (vespid worker: what vespid's control plane sends the workers it starts) "
        "or its own RSA-2048 signature (vespid worker, RSA); a replayed one was refused with "
        f"{replays.get(WORKER)} and {replays.get(WORKER_RSA)}",
        "",
        f"1. tiny JSON, {s['concurrency']} concurrent connections "
        f"({s['requests']} requests per target in {s['rounds']} rounds, after "
        f"{s['warmup']} warm-up)",
    ]
    header = ["target", "req/s", "p50 ms", "p99 ms", "proxy CPU µs/req", "proxy busy %"]
    header += ["backend CPU µs/req", "client CPU µs/req", "errors"]
    rows = [
        [
            LABELS[n],
            _f(conc[n]["rps"], 0),
            _f(conc[n]["p50_ms"]),
            _f(conc[n]["p99_ms"]),
            "-" if n == DIRECT else _f(conc[n]["proxy_cpu_us_per_req"], 0),
            "-" if n == DIRECT else _f(conc[n]["proxy_busy_pct"], 0),
            _f(conc[n]["backend_cpu_us_per_req"], 0),
            _f(conc[n]["client_cpu_us_per_req"], 0),
            str(conc[n]["errors"]),
        ]
        for n in names
    ]
    lines += _table(header, rows)
    lines.append(
        "   req/s by round: "
        + "; ".join(f"{LABELS[n]} {conc[n]['round_rps']}" for n in names)
        + f"\n   CPU from /proc/<pid>/stat utime+stime ({tick_us / 1e3:g} ms ticks: "
        + f"±{cpu_err:.0f} µs/req)"
        + "; idle CPU before the run, ms per s: "
        + ", ".join(f"{LABELS[n]} {v:.1f}" for n, v in results["idle_cpu_ms_per_s"].items())
        + "\n   proxy busy % = proxy CPU time / wall time of the phase (100 = one core saturated)"
        + "; resident memory after the run, MiB: "
        + ", ".join(f"{LABELS[n]} {v:.0f}" for n, v in results["rss_mib_after"].items())
    )
    lines += ["", f"2. concurrency 1 ({s['sequential']} sequential requests per target)"]
    header = ["target", "p50 ms", "p90 ms", "p99 ms", "p50 added vs direct µs", "errors"]
    rows = [
        [
            LABELS[n],
            _f(seq[n]["p50_ms"], 3),
            _f(seq[n]["p90_ms"], 3),
            _f(seq[n]["p99_ms"], 3),
            "-" if n == DIRECT else f"{(seq[n]['p50_ms'] - seq[DIRECT]['p50_ms']) * 1e3:+.0f}",
            str(seq[n]["errors"]),
        ]
        for n in names
    ]
    lines += _table(header, rows)
    lines += [
        "",
        f"3. streaming time to first byte ({s['streams']} streams per target, one at a time; "
        f"{s['stream_events']} SSE events {s['stream_interval_ms']:g} ms apart, "
        "the first sent at once)",
    ]
    header = ["target", "TTFB p50 ms", "TTFB p99 ms", "TTFB added µs", "whole stream p50 ms"]
    header += ["chunks seen p50", "errors"]
    rows = [
        [
            LABELS[n],
            _f(st[n]["ttfb_p50_ms"], 3),
            _f(st[n]["ttfb_p99_ms"], 3),
            "-"
            if n == DIRECT
            else f"{(st[n]['ttfb_p50_ms'] - st[DIRECT]['ttfb_p50_ms']) * 1e3:+.0f}",
            _f(st[n]["complete_p50_ms"], 1),
            _f(st[n]["chunks_p50"], 0),
            str(st[n]["errors"]),
        ]
        for n in names
    ]
    lines += _table(header, rows)
    lines += [
        "",
        "ratios",
        f"  worker throughput / direct          {r['worker_rps_over_direct']:.2f}"
        f"   (minimal proxy / direct {r['minimal_rps_over_direct']:.2f}, "
        f"worker / minimal {r['worker_rps_over_minimal']:.2f})",
        f"  worker CPU / minimal proxy CPU      {r['worker_cpu_over_minimal_cpu']:.2f}"
        f"   ({conc[WORKER]['proxy_cpu_us_per_req']:.0f} vs "
        f"{conc[MINIMAL]['proxy_cpu_us_per_req']:.0f} µs per request)",
        f"  same, RSA-signed requests           {r['worker_rsa_cpu_over_minimal_cpu']:.2f}"
        f"   ({conc[WORKER_RSA]['proxy_cpu_us_per_req']:.0f} µs per request; throughput / "
        f"direct {r['worker_rsa_rps_over_direct']:.2f}, p50 at conc. 1 "
        f"{_us(r['worker_rsa_c1_p50_minus_direct_ms'])})",
        f"  worker p50 - direct p50, conc. 1    {_us(r['worker_c1_p50_minus_direct_ms'])}"
        f"   (minimal proxy {_us(r['minimal_c1_p50_minus_direct_ms'])})",
        f"  worker TTFB p50 - direct TTFB p50   {_us(r['worker_ttfb_p50_minus_direct_ms'])}"
        f"   (minimal proxy {_us(r['minimal_ttfb_p50_minus_direct_ms'])})",
    ]
    for phase in ("concurrent", "sequential", "streaming"):
        for n in names:
            if results[phase][n]["errors"]:
                lines.append(
                    f"WARNING: {phase}: {LABELS[n]} had {results[phase][n]['errors']} errors, "
                    f"first: {results[phase][n]['first_error']}"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="per target at concurrency")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=500, help="requests at concurrency 1")
    parser.add_argument("--streams", type=int, default=100, help="streams for the TTFB phase")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per target")
    parser.add_argument("--rounds", type=int, default=3, help="rounds each phase is split into")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "sequential", "streams", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.rounds > min(args.requests, args.sequential, args.streams):
        parser.error("--rounds must not exceed --requests, --sequential or --streams")
    return Options(
        requests=args.requests,
        concurrency=args.concurrency,
        sequential=args.sequential,
        streams=args.streams,
        warmup=args.warmup,
        rounds=args.rounds,
        json_path=args.json,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    coro = run(opts, print)
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    except KeyboardInterrupt:
        print("interrupted; every server was stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; every server was stopped", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
