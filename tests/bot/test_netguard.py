"""The network guard: which addresses are refused, and that refusals happen at connect time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import aiohttp
import pytest

from bot.core.errors import BlockedAddress
from bot.fetch.netguard import (
    AddressPolicy,
    BlockedConnection,
    ConnectGuard,
    ThreadGuard,
    embedded_ipv4,
    guard_thread,
    is_public,
    parse_ip,
)

REFUSED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "127.0.0.1",
    "127.1.2.3",
    "169.254.169.254",  # cloud metadata
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::1",
    "2001:db8::1",
    "2001:0::1",  # Teredo
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "100::1",
    "4000::1",  # outside 2000::/3: unassigned
]
ALLOWED = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused_by_default(address: str) -> None:
    assert not is_public(parse_ip(address))
    assert not AddressPolicy().allows(address)
    with pytest.raises(BlockedAddress) as caught:
        AddressPolicy().check(address)
    assert caught.value.kind == BlockedAddress.kind


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_allowed(address: str) -> None:
    assert is_public(parse_ip(address))
    AddressPolicy().check(address)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::ffff:127.0.0.1", True),  # the mapped form is the same host
        ("::1", False),  # another network, not listed
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("8.8.8.8", True),
    ],
)
def test_allow_networks_opens_only_what_it_lists(address: str, allowed: bool) -> None:
    policy = AddressPolicy.from_cidrs(["127.0.0.0/8"])
    assert policy.allows(address) is allowed


def test_bad_cidr_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        AddressPolicy.from_cidrs(["127.0.0.0/33"])


def test_embedded_ipv4() -> None:
    assert str(embedded_ipv4(parse_ip("::ffff:10.1.2.3"))) == "10.1.2.3"
    assert str(embedded_ipv4(parse_ip("64:ff9b::7f00:1"))) == "127.0.0.1"
    assert str(embedded_ipv4(parse_ip("2002:c0a8:101::"))) == "192.168.1.1"
    assert embedded_ipv4(parse_ip("2606:4700::1")) is None
    assert embedded_ipv4(parse_ip("10.0.0.1")) is None


# ---- connect-time enforcement ---------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain TCP listener on 127.0.0.1 that counts nothing but accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def _connect_in_thread(address: tuple[str, int], guard: ThreadGuard | None) -> BaseException | None:
    """Connect from a fresh thread, guarded or not; return what the connect raised."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            if guard is None:
                socket.create_connection(address, timeout=5).close()
            else:
                with guard_thread(guard):
                    socket.create_connection(address, timeout=5).close()
            outcome.append(None)
        except BaseException as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return outcome[0]


def test_guarded_thread_cannot_connect_to_refused_address(listener: socket.socket) -> None:
    address = listener.getsockname()
    guard = ThreadGuard(AddressPolicy())
    error = _connect_in_thread(address, guard)
    assert isinstance(error, BlockedConnection)
    assert guard.refused == ["127.0.0.1"]


def test_guard_is_per_thread_and_follows_the_policy(listener: socket.socket) -> None:
    address = listener.getsockname()
    # Unguarded threads (the rest of the bot) are untouched even once the hook is installed.
    _connect_in_thread(address, ThreadGuard(AddressPolicy()))
    assert _connect_in_thread(address, None) is None
    loopback = ThreadGuard(AddressPolicy.from_cidrs(["127.0.0.0/8"]))
    assert _connect_in_thread(address, loopback) is None


def test_cancelled_guard_refuses_every_connection(listener: socket.socket) -> None:
    guard = ThreadGuard(AddressPolicy.from_cidrs(["127.0.0.0/8"]))
    guard.cancelled.set()
    assert isinstance(_connect_in_thread(listener.getsockname(), guard), BlockedConnection)


def test_thread_guard_does_not_nest() -> None:
    guard = ThreadGuard(AddressPolicy())
    with guard_thread(guard), pytest.raises(RuntimeError), guard_thread(guard):
        pass


async def _get(url: str, guard: ConnectGuard) -> int:
    connector = aiohttp.TCPConnector(
        resolver=guard.resolver, socket_factory=guard.socket_factory, use_dns_cache=False
    )
    # A bounded wait: if the guard failed, the listener would accept and never answer.
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(url) as response,
    ):
        return response.status


async def test_aiohttp_socket_factory_refuses_ip_literal(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    guard = ConnectGuard(AddressPolicy())
    with pytest.raises(aiohttp.ClientConnectorError):
        await _get(f"http://127.0.0.1:{port}/", guard)
    assert guard.refused == ["127.0.0.1"]


async def test_aiohttp_resolver_refuses_names_resolving_to_refused_addresses(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    guard = ConnectGuard(AddressPolicy())
    with pytest.raises(aiohttp.ClientConnectorError):
        await _get(f"http://localhost:{port}/", guard)
    assert guard.refused
    assert all(not is_public(parse_ip(address)) for address in guard.refused)


def test_guarded_thread_cannot_send_datagrams_to_refused_address() -> None:
    """UDP reaches an address without connect(); sendto is checked the same way."""
    guard = ThreadGuard(AddressPolicy())
    outcome: list[BaseException | None] = []

    def work() -> None:
        with guard_thread(guard), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(b"x", ("127.0.0.1", 9))
                outcome.append(None)
            except BaseException as error:  # handed back to the test
                outcome.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert isinstance(outcome[0], BlockedConnection)
    assert guard.refused == ["127.0.0.1"]
