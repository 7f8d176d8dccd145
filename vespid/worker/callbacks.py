"""Where a session's ``on_close_route`` may point, and the HTTP client that calls it.

A client names the URL, so the worker must not become its way into the worker's own
network. By default a callback goes only to public addresses: a host is resolved
first (``loop.getaddrinfo``, off the event loop) and refused if any address it resolves
to is loopback, private, link-local (the cloud metadata address among them), shared,
multicast or reserved; the connection then goes to the checked address, never to a
second resolution. A host the operator names in ``VESPID_ON_CLOSE_HOSTS`` may resolve to
anything (and then only those hosts are allowed). Whatever the list says, a callback
never goes to one of the worker's own ports on a local address, and redirects are
never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection, Set
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from vespid.errors import RequestInvalid

__all__ = ["CallbackRefused", "CallbackRoutes", "check_route_syntax"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
FIELD: Final = "payload.on_close_route"


class CallbackRefused(OSError):
    """The callback's host is one the worker does not call."""


def check_route_syntax(route: Any) -> tuple[str, int]:
    """The host and port of an absolute http(s) URL; RequestInvalid (422) otherwise."""
    try:
        parts = urlsplit(route) if isinstance(route, str) else None
        host = parts.hostname if parts is not None else None
        port = parts.port if parts is not None else None  # raises on a bad port
    except ValueError:
        parts = host = None  # e.g. "http://[::1/x": an unclosed bracket
        port = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise RequestInvalid(
            f"{FIELD} must be an absolute http(s) URL",
            fields={FIELD: "expected an http(s) URL"},
        )
    return host, port or (443 if parts.scheme == "https" else 80)


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _as_ip(address: str) -> IPAddress | None:
    """The address ``address`` spells, in any form a resolver takes ("127.1",
    "0x7f.1", a zone id); None for a name."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        pass
    if address and all(c in "0123456789abcdefxABCDEFX." for c in address):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(address))
        except OSError:
            return None
    return None


def not_public(ip: IPAddress) -> bool:
    """Loopback, private, link-local (metadata), shared, multicast, reserved: not global."""
    ip = _embedded(ip)
    return not ip.is_global or ip.is_multicast


class CallbackRoutes:
    """The rules for on-close callbacks of one worker: its allow-list and its own ports."""

    def __init__(self, allowed_hosts: Collection[str], own_addresses: Collection[str]) -> None:
        self.allowed = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self.own_addresses = frozenset(own_addresses)
        self.own_ports: set[int] = set()  # filled in as the worker's ports are bound

    def check_route(self, route: Any) -> None:
        """At /session/create: RequestInvalid (422) for a URL never to be called."""
        host, port = check_route_syntax(route)
        try:
            self.check_address(host, port, host)
        except CallbackRefused as exc:
            raise RequestInvalid(str(exc), fields={FIELD: "address not allowed"}) from None

    def check_host(self, host: str) -> None:
        if self.allowed and host.lower() not in self.allowed:
            raise CallbackRefused(
                f"{FIELD} host {host!r} is not allowed "
                f"(VESPID_ON_CLOSE_HOSTS: {', '.join(sorted(self.allowed))})"
            )

    def check_address(self, host: str, port: int, address: str) -> None:
        """CallbackRefused unless ``host`` (at ``address``, one of its addresses, or the
        host itself when it is an IP literal) may be called on ``port``."""
        self.check_host(host)
        ip = _as_ip(address)
        if ip is None:
            return  # a name: checked address by address when it is resolved
        local = ip.is_loopback or ip.is_unspecified or str(ip) in self.own_addresses
        if local and port in self.own_ports:
            raise CallbackRefused(f"{FIELD} names this worker's own port {port}")
        if host.lower() not in self.allowed and not_public(ip):
            raise CallbackRefused(
                f"{FIELD} host {host!r} is (or resolves to) {ip}, which is not a public "
                "address; an operator may allow the host in VESPID_ON_CLOSE_HOSTS"
            )

    def client(self) -> aiohttp.ClientSession:
        """The HTTP client callbacks go through: connections only to checked addresses."""
        connector = aiohttp.TCPConnector(resolver=_CheckedResolver(self), use_dns_cache=False)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class _CheckedResolver(AbstractResolver):
    """Resolves without blocking the loop, then refuses the host if any address is not
    allowed; aiohttp connects to the addresses it returns, so nothing is resolved twice."""

    def __init__(self, routes: CallbackRoutes) -> None:
        self._routes = routes
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._routes.check_address(host, port, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def own_addresses(*configured: str | None) -> Set[str]:
    """The worker's own addresses that settings name (its listening host, its public one)."""
    found: set[str] = set()
    for value in configured:
        try:
            found.add(str(ipaddress.ip_address(value or "")))
        except ValueError:
            continue
    return found
