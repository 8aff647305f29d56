"""Which hosts the child may fetch sources from: by default, public addresses only.

A feed (or a redirect it answers with) must not make the child read the host's own
services (``127.0.0.1:…/metrics``), the cloud metadata address or the private network.
``cascade.allow_private_addresses`` lifts this for local demos and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class PrivateAddressError(Exception):
    """The URL's host is, or resolves to, an address the child may not fetch."""


def check_public_url(url: str) -> None:
    """Refuse a URL whose host is loopback, link-local, private or otherwise not public.

    Every address the name resolves to must be public, so a name with one private
    address among public ones is refused too.

    :raises PrivateAddressError: naming the host (never the query).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return  # the fetch itself reports an unknown host
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise PrivateAddressError(
                f"{host} resolves to {address}, a loopback, private or link-local address; "
                "set cascade.allow_private_addresses (CASCADE_ALLOW_PRIVATE_ADDRESSES=true) "
                "to allow it")


def describe_url(url: str, *, with_path: bool = False, unknown: str = "(invalid URL)") -> str:
    """Name a URL for logs and errors by scheme and host (and path): never its query,
    where private feeds and webhooks carry their keys and tokens."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        host = ""
    if not host:
        return unknown
    return f"{parts.scheme}://{host}" + (parts.path if with_path else "")
