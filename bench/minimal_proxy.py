"""The floor to beat: the least an aiohttp reverse proxy can do for vespid's envelope.

An aiohttp web server and one shared aiohttp ClientSession. For every ``POST
/<path>`` it reads the body, parses it as JSON, re-serialises its ``payload`` and
POSTs that to ``BACKEND/<path>``; it answers with the backend's status, content type
and body. A body with a Content-Length is read whole and sent on; anything else
(SSE) is relayed chunk by chunk as it arrives. It checks nothing: no signature, no
admission, no books, no metrics, no logging. It runs on uvloop when installed, as
the vespid worker does, with the access log off, as the worker has it.

Usage: ``python bench/minimal_proxy.py --port PORT --backend http://127.0.0.1:BPORT``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Final

import aiohttp
import orjson
from aiohttp import web

JSON_HEADERS: Final = {"Content-Type": "application/json"}
SESSION_KEY: Final = web.AppKey("session", aiohttp.ClientSession)


def build_app(backend: str) -> web.Application:
    async def open_session(app: web.Application) -> None:
        app[SESSION_KEY] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            # No total deadline (answers may stream for minutes); a silent backend
            # still ends the request, as any real proxy needs.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600),
        )

    async def close_session(app: web.Application) -> None:
        await app[SESSION_KEY].close()

    async def passthrough(request: web.Request) -> web.StreamResponse:
        envelope = orjson.loads(await request.read())
        body = orjson.dumps(envelope["payload"])
        session = request.app[SESSION_KEY]
        async with session.post(backend + request.path_qs, data=body, headers=JSON_HEADERS) as resp:
            content_type = resp.headers.get("Content-Type", "application/octet-stream")
            if resp.content_length is not None:
                return web.Response(
                    body=await resp.read(),
                    status=resp.status,
                    headers={"Content-Type": content_type},
                )
            out = web.StreamResponse(status=resp.status, headers={"Content-Type": content_type})
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/{path:.*}", passthrough)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


async def serve(host: str, port: int, backend: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(backend.rstrip("/")), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    args = parser.parse_args()
    coro = serve(args.host, args.port, args.backend)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(coro)
        else:
            uvloop.run(coro)


if __name__ == "__main__":
    main()
