"""The dispatcher: one session per job, so the autoscaler runs one worker per job.

    python dispatcher.py --url http://127.0.0.1:8080 --api-key KEY --endpoint jobs \
        --redis redis://127.0.0.1:6379 --jobs 3

For each job it opens a session on the endpoint with vespid's client (which reserves
a worker, starting one if none is free), puts the job with the session's id on that
worker's Redis list, waits for the result, and leaves the session (already released by
the consumer, which names it to ``/release``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import redis.asyncio as redis

from vespid.client import Client


async def run_job(
    endpoint: Any, store: Any, job: dict[str, Any], *, cost: float, timeout_s: float
) -> dict[str, Any]:
    async with endpoint.session(cost=cost, lifetime=600) as session:
        # The consumer releases the worker by naming this session (its id is the key).
        job = {**job, "session_id": session.session_id}
        await store.rpush(f"jobs:{session.url}", json.dumps(job))
        item = await store.blpop([f"results:{job['job_id']}"], timeout=timeout_s)
    if item is None:
        raise TimeoutError(f"job {job['job_id']} got no result within {timeout_s} s")
    result: dict[str, Any] = json.loads(item[1])
    return result


async def dispatch(
    url: str,
    api_key: str,
    endpoint_name: str,
    redis_url: str,
    jobs: list[dict[str, Any]],
    *,
    cost: float = 100,
    timeout_s: float = 120,
) -> list[dict[str, Any]]:
    """Run every job in its own session, all at once; return their results in order."""
    store = redis.from_url(redis_url)
    try:
        async with Client(url, api_key, timeout_s=timeout_s) as client:
            endpoint = await client.get_endpoint(endpoint_name)
            return list(
                await asyncio.gather(
                    *(run_job(endpoint, store, j, cost=cost, timeout_s=timeout_s) for j in jobs)
                )
            )
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--endpoint", default="jobs")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each job works")
    args = parser.parse_args()
    jobs = [{"job_id": f"job-{i}", "n": 1000 * (i + 1), "seconds": args.seconds}
            for i in range(args.jobs)]  # fmt: skip
    for result in asyncio.run(dispatch(args.url, args.api_key, args.endpoint, args.redis, jobs)):
        print(json.dumps(result))


if __name__ == "__main__":
    main()
