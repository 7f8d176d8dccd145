"""The hello_world worker, written as PyWorker's walk-through writes it, run by vespid.

Only the imports differ from PyWorker's (``vespid.compat.pyworker`` instead of ``lib``),
and the model server's address may come from ``MODEL_SERVER_URL``.

Usage: ``MODEL_LOG=/tmp/model.log UNSECURED=true python -m examples.hello_world.server``
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from aiohttp import ClientResponse, web

from examples.hello_world.data_types import InputData
from vespid.compat.pyworker import Backend, EndpointHandler, LogAction, start_server

log = logging.getLogger(__name__)

# the url and port of model API
MODEL_SERVER_URL = os.environ.get("MODEL_SERVER_URL", "http://127.0.0.1:5001")

# This is the log line that is emitted once the server has started
MODEL_SERVER_START_LOG_MSG = "server has started"
MODEL_SERVER_ERROR_LOG_MSGS = [
    "Exception: corrupted model file"  # message in the logs indicating the unrecoverable error
]


# This class is the implementer for the '/generate' endpoint of model API
@dataclasses.dataclass
class GenerateHandler(EndpointHandler[InputData]):
    @property
    def endpoint(self) -> str:
        # the API endpoint
        return "/generate"

    @classmethod
    def payload_cls(cls) -> type[InputData]:
        """this function should just return ApiPayload subclass used by this handler"""
        return InputData

    def generate_payload_json(self, payload: InputData) -> dict[str, Any]:
        """convert InputData to the JSON sent to the model API"""
        return dataclasses.asdict(payload)

    def make_benchmark_payload(self) -> InputData:
        """an InputData for benchmarking"""
        return InputData.for_test()

    async def generate_client_response(
        self, client_request: web.Request, model_response: ClientResponse
    ) -> web.Response | web.StreamResponse:
        """convert a model API response to a response to the worker's client"""
        _ = client_request
        match model_response.status:
            case 200:
                log.debug("SUCCESS")
                data = await model_response.json()
                return web.json_response(data=data)
            case code:
                log.debug("SENDING RESPONSE: ERROR: unknown code")
                return web.Response(status=code)


class GenerateStreamHandler(EndpointHandler[InputData]):
    @property
    def endpoint(self) -> str:
        return "/generate_stream"

    @classmethod
    def payload_cls(cls) -> type[InputData]:
        return InputData

    def generate_payload_json(self, payload: InputData) -> dict[str, Any]:
        return dataclasses.asdict(payload)

    def make_benchmark_payload(self) -> InputData:
        return InputData.for_test()

    async def generate_client_response(
        self, client_request: web.Request, model_response: ClientResponse
    ) -> web.Response | web.StreamResponse:
        match model_response.status:
            case 200:
                log.debug("Streaming response...")
                res = web.StreamResponse()
                res.content_type = "text/event-stream"
                await res.prepare(client_request)
                async for chunk in model_response.content:
                    await res.write(chunk)
                await res.write_eof()
                log.debug("Done streaming response")
                return res
            case code:
                log.debug("SENDING RESPONSE: ERROR: unknown code")
                return web.Response(status=code)


backend = Backend(
    model_server_url=MODEL_SERVER_URL,
    # location of model log file
    model_log_file=os.environ.get("MODEL_LOG"),
    # for some model backends that can only handle one request at a time, be sure to set this
    # to False to let the worker queue requests.
    allow_parallel_requests=True,
    # give the backend an EndpointHandler instance that is used for benchmarking
    benchmark_handler=GenerateHandler(benchmark_runs=3, benchmark_words=256),
    # defines how to handle specific log messages. See docstring of LogAction for details
    log_actions=[
        (LogAction.ModelLoaded, MODEL_SERVER_START_LOG_MSG),
        (LogAction.Info, '"message":"Download'),
        *[(LogAction.ModelError, error_msg) for error_msg in MODEL_SERVER_ERROR_LOG_MSGS],
    ],
)


# this is a simple ping handler for the worker
async def handle_ping(_: web.Request) -> web.Response:
    return web.Response(body="pong")


# this is a handler for forwarding a health check to model API
async def handle_healthcheck(_: web.Request) -> web.Response:
    healthcheck_res = await backend.session.get("/healthcheck")
    return web.Response(body=healthcheck_res.content, status=healthcheck_res.status)


routes = [
    web.post("/generate", backend.create_handler(GenerateHandler())),
    web.post("/generate_stream", backend.create_handler(GenerateStreamHandler())),
    web.get("/ping", handle_ping),
    web.get("/healthcheck", handle_healthcheck),
]

if __name__ == "__main__":
    start_server(backend, routes)
