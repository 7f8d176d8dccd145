"""``start_server.sh`` run as Vast's templates run it: a fresh clone, Vast's variables set.

Once per module, the checkout's files are copied to a temporary clone (as a ``git clone`` of
``PYWORKER_REPO`` would have them) and ``start_server.sh --install-only`` makes the venv in a
temporary ``WORKSPACE_DIR``. Each test then runs the clone's ``start_server.sh`` with bash,
with no PYTHONPATH and no ``VESPID_`` variables beyond listening on 127.0.0.1, Vast's
variables (``REPORT_ADDR``, ``WORKER_PORT``, ``MASTER_TOKEN``, ``CONTAINER_ID``,
``PUBLIC_IPADDR``, ``VAST_TCP_PORT_<port>``, ``USE_SSL``, ``MODEL_SERVER_URL`` or
``BACKEND=null``) pointing at a stand-in autoscaler on 127.0.0.1 that serves the router's
public key and records reports, and a stand-in model server. Requests are signed as Vast's
router signs them (its current scheme: the worker's url alone).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.docs.shell import copy_checkout, stop
from tests.support.servers import Autoscaler, ScriptedBackend, start_app
from vespid.protocol.signing import vast_current_message
from vespid.servers.process import free_port

CONTAINER_ID = "4242"
MASTER_TOKEN = "master-token-of-this-instance"


@dataclass(frozen=True)
class Install:
    clone: Path
    workspace: Path


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    base = tmp_path_factory.mktemp("vast")
    clone = copy_checkout(base / "pyworker")
    workspace = base / "workspace"
    done = subprocess.run(
        ["bash", str(clone / "start_server.sh"), "--install-only"],
        env={**base_env(), "WORKSPACE_DIR": str(workspace)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "installing vespid from" in done.stderr
    return Install(clone, workspace)


def base_env() -> dict[str, str]:
    """This environment with nothing pointing at the checkout or set for vespid."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith("VESPID_") and k not in drop}


@dataclass
class Instance:
    """A Vast instance's worker, started by start_server.sh."""

    url: str
    log: Path
    proc: asyncio.subprocess.Process


@pytest.fixture
async def autoscaler() -> AsyncIterator[tuple[Autoscaler, str]]:
    scaler = Autoscaler()
    async with start_app(scaler.app()) as url:
        yield scaler, url


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    async with start_app(ScriptedBackend().app()) as url:
        yield url


@pytest.fixture
def vast_env(
    install: Install, autoscaler: tuple[Autoscaler, str], tmp_path: Path
) -> dict[str, str]:
    """What Vast sets on an instance, pointed here; and a listening address on loopback."""
    port = free_port()
    return {
        **base_env(),
        "WORKSPACE_DIR": str(install.workspace),
        "PYWORKER_LOG": str(tmp_path / "pyworker.log"),
        "REPORT_ADDR": autoscaler[1],
        "WORKER_PORT": str(port),
        "MASTER_TOKEN": MASTER_TOKEN,
        "CONTAINER_ID": CONTAINER_ID,
        "PUBLIC_IPADDR": "127.0.0.1",
        f"VAST_TCP_PORT_{port}": str(port),
        "USE_SSL": "false",
        "VESPID_HOST": "127.0.0.1",
        "VESPID_CACHE_DIR": str(tmp_path / "cache"),
    }


@asynccontextmanager
async def started(
    install: Install, env: dict[str, str], scaler: Autoscaler, scheme: str = "http"
) -> AsyncIterator[Instance]:
    """start_server.sh running until its worker reports ready at its public url; then
    SIGTERM, which must end it with 0."""
    url = f"{scheme}://127.0.0.1:{env['WORKER_PORT']}"
    log_path = Path(env["PYWORKER_LOG"]).with_suffix(".stdout")
    log = await asyncio.to_thread(log_path.open, "wb")
    proc = await asyncio.create_subprocess_exec(
        "bash", str(install.clone / "start_server.sh"), cwd=install.workspace, env=env,
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        await ready_or_exited(scaler, url, proc)
        yield Instance(url, log_path, proc)
    finally:
        code = await stop(proc)
        log.close()
    assert code == 0, await asyncio.to_thread(log_path.read_text)


async def ready_or_exited(scaler: Autoscaler, url: str, proc: asyncio.subprocess.Process) -> None:
    """Until a report from the worker at ``url`` carries its load time; fails if it exits."""
    ready = asyncio.ensure_future(
        scaler.wait_for(
            lambda s: any(r["loadtime"] > 0 for r in from_this_worker(s, url)), timeout_s=60
        )
    )
    exited = asyncio.ensure_future(proc.wait())
    await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        raise AssertionError(f"start_server.sh exited with {proc.returncode} before ready")
    exited.cancel()
    ready.result()


def vast_auth(scaler: Autoscaler, url: str, n: int, cost: float = 1) -> dict[str, Any]:
    """auth_data as Vast's router makes it: its signature binds only the worker's url."""
    return {
        "cost": str(cost),
        "endpoint": "vast-endpoint",
        "reqnum": n,
        "request_idx": n,
        "url": url,
        "signature": scaler.signer.sign(vast_current_message(url)),
    }


def from_this_worker(scaler: Autoscaler, url: str) -> list[dict[str, Any]]:
    return [r for r in scaler.status_reports if r["id"] == int(CONTAINER_ID) and r["url"] == url]


async def test_llm_worker_reports_and_serves_a_vast_signed_request(
    install: Install,
    vast_env: dict[str, str],
    autoscaler: tuple[Autoscaler, str],
    backend: str,
) -> None:
    """MODEL_SERVER_URL stands for BACKEND_URL; a MODEL_LOG without the text that means
    loaded is set aside, not a start-up error; the worker's output lands in PYWORKER_LOG."""
    scaler, _ = autoscaler
    env = {
        **vast_env,
        "MODEL_SERVER_URL": backend,
        "HEALTHCHECK_ENDPOINT": "/health",
        "MODEL_LOG": str(install.workspace / "model.log"),
        "BACKEND": "vllm",
    }
    async with started(install, env, scaler) as worker, aiohttp.ClientSession() as http:
        reports = from_this_worker(scaler, worker.url)
        assert {r["mtoken"] for r in reports} == {MASTER_TOKEN}
        assert all(r["max_perf"] > 0 and not r["error_msg"] for r in reports[-1:])

        body = {"auth_data": vast_auth(scaler, worker.url, 7, cost=50), "payload": {"x": 1}}
        async with http.post(worker.url + "/echo", json=body) as resp:
            assert resp.status == 200
            assert json.loads((await resp.json())["body"]) == {"x": 1}
        forged = {**body["auth_data"], "url": "http://127.0.0.1:1"}
        async with http.post(worker.url + "/echo", json={**body, "auth_data": forged}) as resp:
            assert resp.status == 401  # signed for another worker
        await scaler.wait_for(
            lambda s: any(
                r["worker_id"] == int(CONTAINER_ID) and r["requests"][0]["request_idx"] == 7
                for r in s.delete_reports
                if r["requests"]
            )
        )
        assert any(r["new_load"] == 50 for r in from_this_worker(scaler, worker.url))
    out = await asyncio.to_thread(worker.log.read_text)
    assert "reusing the venv" in out  # the install of the first run, not a second one
    assert "BACKEND=vllm: served by vespid's generic worker" in out
    assert "MODEL_LOG is not tailed" in out
    pyworker_log = await asyncio.to_thread(Path(env["PYWORKER_LOG"]).read_text)
    assert "worker listening" in pyworker_log


async def test_null_worker_holds_one_session(
    install: Install, vast_env: dict[str, str], autoscaler: tuple[Autoscaler, str]
) -> None:
    """BACKEND=null: no model server; one session per worker, the second refused with 429."""
    scaler, _ = autoscaler
    env = {
        **vast_env,
        "BACKEND": "null",
        "NULL_CONTROL_PORT": str(free_port()),
        "WORKER_HTTP_PORT": str(free_port()),
    }
    async with started(install, env, scaler) as worker, aiohttp.ClientSession() as http:
        auth = vast_auth(scaler, worker.url, 1, cost=100)
        create = {"auth_data": auth, "payload": {"lifetime": 60}}
        async with http.post(worker.url + "/session/create", json=create) as resp:
            assert resp.status == 201
            session_id = (await resp.json())["session_id"]
        await scaler.wait_for(
            lambda s: any(r["cur_load"] == 100 for r in from_this_worker(s, worker.url))
        )
        second = {"auth_data": vast_auth(scaler, worker.url, 2, cost=100), "payload": {}}
        async with http.post(worker.url + "/session/create", json=second) as resp:
            assert resp.status == 429
        end = {"session_id": session_id, "session_auth": auth}
        async with http.post(worker.url + "/session/end", json=end) as resp:
            assert resp.status == 200
            assert (await resp.json())["ended"] is True


async def test_an_old_python_is_reported_to_the_autoscaler(
    install: Install, vast_env: dict[str, str], autoscaler: tuple[Autoscaler, str], tmp_path: Path
) -> None:
    """Where no venv can be made, the autoscaler hears why (error_msg), and the exit is 1."""
    scaler, _ = autoscaler
    old_python = tmp_path / "python3.10"
    old_python.write_text("#!/bin/sh\nexit 1\n")
    old_python.chmod(0o755)
    env = {**vast_env, "ENV_PATH": str(tmp_path / "no-env"), "PYTHON": str(old_python)}
    proc = await asyncio.create_subprocess_exec(
        "bash", str(install.clone / "start_server.sh"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 1, err
    [report] = scaler.status_reports
    assert report["id"] == int(CONTAINER_ID)
    assert report["mtoken"] == MASTER_TOKEN
    assert "needs Python 3.11 or newer" in report["error_msg"]


@dataclass
class CertificateSigner:
    """Stands in for Vast's ``/api/v0/sign_cert/``: signs an instance's certificate request
    with its own CA, for the instance's public address."""

    ca_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    instance_ids: list[str] = field(default_factory=list)

    ca_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in CA")])
        self.ca_cert = self._issue(name, name, self.ca_key.public_key(), ca=True)

    def _issue(
        self, subject: x509.Name, issuer: x509.Name, key: Any, *, ca: bool
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder(
                issuer_name=issuer, subject_name=subject, public_key=key,
                serial_number=x509.random_serial_number(),
                not_valid_before=now, not_valid_after=now + datetime.timedelta(hours=1),
            )
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(self.ca_key, hashes.SHA256())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v0/sign_cert/", self._sign)
        return app

    async def _sign(self, request: web.Request) -> web.Response:
        self.instance_ids.append(request.query["instance_id"])
        csr = x509.load_pem_x509_csr(await request.read())
        assert csr.is_signature_valid
        cert = self._issue(csr.subject, self.ca_cert.subject, csr.public_key(), ca=False)
        return web.Response(body=cert.public_bytes(serialization.Encoding.PEM))


async def test_use_ssl_has_the_certificate_signed_and_serves_https(
    install: Install, vast_env: dict[str, str], autoscaler: tuple[Autoscaler, str],
    backend: str, tmp_path: Path,
) -> None:  # fmt: skip
    """USE_SSL=true with no certificate yet: a key made on the instance, its request signed
    for CONTAINER_ID, and the worker serving HTTPS at the https:// url it reports."""
    scaler, _ = autoscaler
    signer = CertificateSigner()
    async with start_app(signer.app()) as signer_url:
        env = {
            **vast_env,
            "USE_SSL": "true",
            "VAST_SIGN_CERT_URL": signer_url + "/api/v0/sign_cert/",
            "VESPID_SSL_CERT_FILE": str(tmp_path / "instance.crt"),
            "VESPID_SSL_KEY_FILE": str(tmp_path / "instance.key"),
            "BACKEND_URL": backend,
        }
        async with started(install, env, scaler, scheme="https") as worker:
            tls = ssl.create_default_context(
                cadata=signer.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
            )
            body = {"auth_data": vast_auth(scaler, worker.url, 3), "payload": {"x": 2}}
            async with (
                aiohttp.ClientSession() as http,
                http.post(worker.url + "/echo", json=body, ssl=tls) as resp,
            ):
                assert resp.status == 200
    assert signer.instance_ids == [CONTAINER_ID]
    assert (tmp_path / "instance.key").stat().st_mode & 0o077 == 0  # the key is private
