"""Built-in throughput benchmarks, one module per model-server API."""

from __future__ import annotations

__all__: list[str] = []
