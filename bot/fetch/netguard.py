"""Network guard: keeps the fetcher from being used to reach addresses it must not reach.

A chat user controls the links we open, so every host and every redirect hop is resolved and
each address checked before we connect to it: private, loopback, link-local, CGNAT, reserved,
multicast, unspecified and documentation ranges, and IPv6 forms that embed one of those IPv4
addresses, are refused unless the operator's `allow_networks` lists them (tests allow
127.0.0.0/8 that way; production configuration leaves it empty).

Two places enforce the policy at connect time, so a name that resolves to a public address when
checked and a private one a moment later (DNS rebinding) gains nothing:

- aiohttp: `ConnectGuard.resolver` checks what DNS returns, and `ConnectGuard.socket_factory`
  checks the very address each socket is about to connect to (this also covers IP literals,
  which aiohttp never sends to a resolver).
- yt-dlp (synchronous, in worker threads): a process-wide audit hook on `socket.connect` (and
  on `socket.sendto`/`sendmsg`, which reach an address without connecting) checks every
  connection made by a thread inside `guard_thread(...)`; other threads are untouched.
  Every socket such a thread opened is closed when the block ends, or shut down at once when
  the job is cancelled. Threads it starts are NOT guarded (Python 3.11 has no audit event for
  starting a thread): callers must configure their library not to start any.

This module must never: treat an address as safe because its name looks safe, allow anything by
default, or act on threads that did not ask to be guarded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bot.core.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED_MESSAGE = "That link points to a private or local network address, so I won't open it."

# Spelled out rather than left to ipaddress.is_private/is_global, whose lists have changed
# between Python patch releases and which count multicast as global.
_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        # IPv4
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
        # IPv6
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0/96",  # IPv4-mapped: checked via the embedded address, never allowed as-is
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, including Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
# Only 2000::/3 is allocated for global unicast; anything outside it (bar the NAT64 prefix,
# handled through its embedded IPv4 address) is unassigned or special.
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def parse_ip(value: str) -> IPAddress:
    """Parse an address as a socket reports it (IPv6 may carry a "%scope" suffix)."""
    return ipaddress.ip_address(value.split("%", 1)[0])


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64 or 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is an ordinary public unicast address (the rule without any allow list)."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    if any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version):
        return False
    return isinstance(ip, ipaddress.IPv4Address) or ip in _GLOBAL_UNICAST_V6


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the fetcher may connect to: public ones, plus `allow_networks`."""

    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """Build from configuration strings such as "127.0.0.0/8"; ValueError on a bad one."""
        return cls(tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs))

    def allows(self, ip: IPAddress | str) -> bool:
        address = parse_ip(ip) if isinstance(ip, str) else ip
        # A mapped address is the IPv4 address it maps to, for the allow list as for the rule.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.allow_networks if net.version == address.version):
            return True
        return is_public(address)

    def check(self, ip: IPAddress | str) -> None:
        """Raise `BlockedAddress` unless the policy allows connecting to `ip`."""
        if not self.allows(ip):
            raise BlockedAddress(BLOCKED_MESSAGE)


class BlockedConnection(OSError):
    """Raised inside a client library when a guarded socket was about to reach a refused IP."""


@dataclass
class ConnectGuard:
    """Per-fetch aiohttp hooks enforcing `policy`, with a record of what they refused.

    Pass `resolver` and `socket_factory` to `aiohttp.TCPConnector`. aiohttp wraps errors raised
    inside it, so callers look at `refused` to tell a refusal from an ordinary network failure.
    """

    policy: AddressPolicy
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.resolver = _GuardedResolver(self)

    def check(self, ip: str) -> None:
        if not self.policy.allows(ip):
            self.refused.append(ip)
            raise BlockedConnection(f"refused to connect to {ip}")

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _canonname, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


class _GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, refusing names with any address the policy refuses."""

    def __init__(self, guard: ConnectGuard) -> None:
        self._guard = guard
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._guard.check(result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


# ---- yt-dlp: guarding synchronous sockets in chosen threads -------------------------------


@dataclass
class ThreadGuard:
    """The state of one guarded job: its policy, what was refused, whether to stop, and the
    sockets it opened (closed when the job ends, so an abandoned download cannot linger)."""

    policy: AddressPolicy
    refused: list[str] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    sockets: list[weakref.ref[socket.socket]] = field(default_factory=list)
    # cancel() (event-loop thread) and close_sockets() (worker) must not interleave: a
    # descriptor closed by one could be reused and then shut down by the other.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cancel(self) -> None:
        """Stop the job from another thread: refuse its further connections, and shut down its
        sockets so a read blocked on a trickling server returns at once."""
        self.cancelled.set()
        with self._lock:
            for ref in list(self.sockets):
                sock = ref()
                if sock is not None:
                    # shutdown(), not close(): the descriptor stays the worker's to close.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close_sockets(self) -> None:
        with self._lock:
            for ref in self.sockets:
                sock = ref()
                if sock is not None:
                    _force_close(sock)
            self.sockets.clear()


def _force_close(sock: socket.socket) -> None:
    """Close the descriptor now. socket.close() waits until file objects made from the socket
    (an abandoned HTTP response) are gone, which can be never; detach() hands us the descriptor
    and leaves the object closed, so nothing else can close that number again later."""
    with contextlib.suppress(OSError):
        fd = sock.detach()
        if fd >= 0:
            os.close(fd)


_local = threading.local()
_hook_lock = threading.Lock()
_hook_installed = False
_EVENTS = frozenset({"socket.__new__", "socket.connect", "socket.sendto", "socket.sendmsg"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs on every audit event in the process: return as fast as possible when not ours.
    if event not in _EVENTS:
        return
    guard: ThreadGuard | None = getattr(_local, "guard", None)
    if guard is None:
        return
    if event == "socket.__new__":
        with contextlib.suppress(TypeError):  # a bare _socket.socket takes no weak references
            guard.sockets.append(weakref.ref(args[0]))
    elif args[1] is not None:  # sendmsg without an address goes where connect() already went
        _check_connect(guard, args[0], args[1])


def _check_connect(guard: ThreadGuard, sock: socket.socket, address: Any) -> None:
    if guard.cancelled.is_set():
        raise BlockedConnection("the fetch was cancelled")
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        # No reason for a fetch to reach a Unix socket or anything else; refuse outright.
        guard.refused.append(repr(address))
        raise BlockedConnection(f"refused to connect to {address!r}")
    ip = str(address[0])
    if not guard.policy.allows(ip):
        guard.refused.append(ip)
        raise BlockedConnection(f"refused to connect to {ip}")


def install_connect_hook() -> None:
    """Install the audit hook once per process (audit hooks cannot be removed)."""
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


@contextlib.contextmanager
def guard_thread(guard: ThreadGuard) -> Iterator[ThreadGuard]:
    """Until the block ends, check every socket this thread connects against `guard`; on the way
    out close every socket the block opened."""
    install_connect_hook()
    if getattr(_local, "guard", None) is not None:
        raise RuntimeError("this thread is already guarded")
    _local.guard = guard
    try:
        yield guard
    finally:
        _local.guard = None
        guard.close_sockets()
