"""vespid: serverless GPU inference, from the worker beside a model server to the autoscaler."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
