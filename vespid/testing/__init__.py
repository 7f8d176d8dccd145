"""Stand-ins for model servers that cannot run without a GPU: TGI, Ollama, ComfyUI and vLLM
(with its sleep mode).

Each speaks its server's exact wire format (routes, bodies, streaming framing, error
shapes) and generates deterministic text or real PNG images without a model, so the
worker, the benchmarks, the handlers and the examples can be exercised anywhere.
Run one with ``python -m vespid.testing.tgi --port 8080`` (or ``.ollama``, ``.comfyui``, ``.vllm``).
"""

from __future__ import annotations

__all__: list[str] = []
