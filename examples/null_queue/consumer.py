"""A queue consumer that runs beside a null worker: take a job, work, release the worker.

    python consumer.py --redis redis://127.0.0.1:6379 \
        --worker-url http://127.0.0.1:3000 --control-url http://127.0.0.1:18999

It pops jobs from the Redis list ``jobs:<worker-url>`` (the dispatcher puts each job
on the list of the worker its session reserved), does the work, pushes the result to
``results:<job_id>`` and POSTs ``/release`` with the job's ``session_id`` on the
worker's local control server, which closes that session so the autoscaler can scale
down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import aiohttp
import redis.asyncio as redis


def work(job: dict[str, Any]) -> dict[str, Any]:
    """The job itself: here, a sum of squares."""
    n = int(job.get("n", 0))
    return {"job_id": job["job_id"], "sum_of_squares": sum(i * i for i in range(n + 1))}


async def consume(redis_url: str, worker_url: str, control_url: str, stop: asyncio.Event) -> None:
    queue = f"jobs:{worker_url}"
    store = redis.from_url(redis_url)
    async with aiohttp.ClientSession() as http:
        try:
            while not stop.is_set():
                item = await store.blpop([queue], timeout=1)
                if item is None:
                    continue
                job = json.loads(item[1])
                await asyncio.sleep(float(job.get("seconds", 0)))  # the job's own duration
                result = work(job)
                await store.rpush(f"results:{job['job_id']}", json.dumps(result))
                release = {"session_id": job["session_id"]}  # only the job's own session
                async with http.post(control_url + "/release", json=release) as resp:
                    released = await resp.json()
                print(f"job {job['job_id']} done; released {released}", file=sys.stderr, flush=True)
        finally:
            await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="Redis URL")
    parser.add_argument("--worker-url", required=True, help="this worker's URL (the queue name)")
    parser.add_argument("--control-url", required=True, help="the worker's control server")
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await consume(args.redis, args.worker_url, args.control_url, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
