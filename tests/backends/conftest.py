"""Fixtures for the backend tests: the worker fixtures, and stand-ins for TGI, Ollama, ComfyUI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.servers import start_app
from tests.worker.conftest import autoscaler, blockbuster, http, make_worker, no_leaked_tasks
from vespid.testing.comfyui import ComfyUIStandIn
from vespid.testing.ollama import OllamaStandIn
from vespid.testing.tgi import TGIStandIn

__all__ = [
    "autoscaler",
    "blockbuster",
    "comfy",
    "http",
    "make_worker",
    "no_leaked_tasks",
    "ollama",
    "stand_ins",
    "tgi",
]


@pytest.fixture
async def stand_ins(
    tgi: tuple[TGIStandIn, str],
    ollama: tuple[OllamaStandIn, str],
    comfy: tuple[ComfyUIStandIn, str],
) -> dict[str, str]:
    """The URLs of all three stand-ins, by name, for parametrized tests."""
    return {"tgi": tgi[1], "ollama": ollama[1], "comfy": comfy[1]}


@pytest.fixture
async def tgi() -> AsyncIterator[tuple[TGIStandIn, str]]:
    stand_in = TGIStandIn()
    async with start_app(stand_in.app()) as url:
        yield stand_in, url


@pytest.fixture
async def ollama() -> AsyncIterator[tuple[OllamaStandIn, str]]:
    stand_in = OllamaStandIn()
    async with start_app(stand_in.app()) as url:
        yield stand_in, url


@pytest.fixture
async def comfy() -> AsyncIterator[tuple[ComfyUIStandIn, str]]:
    stand_in = ComfyUIStandIn()
    async with start_app(stand_in.app()) as url:
        yield stand_in, url
