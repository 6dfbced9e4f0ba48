"""Strict grammars for the network values an operator types: ports, hosts, HOST:PORT, base URLs.

Values from settings and flags end up inside nginx's config and in URLs vrm requests, so each is
parsed into parts here and rendered back from the parts only: nothing an operator typed reaches a
template unparsed. Digits are ASCII only (`int()` would take `٥٠` and `1_000`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from vrm_tui.core.errors import BadInput, shown

__all__ = ["BackendUrl", "HostPort", "parse_backend_url", "parse_host", "parse_hostport",
           "parse_int", "parse_ip", "parse_port"]

# At most 18 digits: past 4300 `int()` raises ValueError instead of refusing the value.
_ASCII_INT = re.compile(r"[+-]?[0-9]{1,18}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_URL = re.compile(r"(https?)://(\[[^\]]*\]|[^:/\[\]]*)(?::([^/]*))?(/?)")


def parse_int(name: str, raw: str, low: int, high: int, text: str | None = None) -> int:
    """A whole number written with ASCII digits, from `low` to `high`. `text` is the part of
    `raw` that holds the number (errors show all of `raw`)."""
    text = str(raw if text is None else text).strip()
    if not _ASCII_INT.fullmatch(text):
        raise BadInput(f"{name}={shown(raw)}: expected a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadInput(f"{name}={shown(raw)}: expected a whole number from {low} to {high}")
    return value


def parse_port(name: str, raw: str, text: str | None = None) -> int:
    """A TCP port, 1-65535."""
    try:
        return parse_int(name, raw, 1, 65535, text)
    except BadInput:
        raise BadInput(f"{name}={shown(raw)}: expected a port from 1 to 65535") from None


def parse_ip(name: str, raw: str) -> str:
    """An IPv4 or IPv6 address without a zone (`fe80::1%eth0` is refused: nginx cannot listen
    on a scoped address); returned in its canonical form."""
    text = str(raw).strip()
    if "%" in text:
        raise BadInput(f"{name}={shown(raw)}: scoped IPv6 addresses (with %zone) are not "
                       "supported; use a global address, or :: for every interface")
    if not text.isascii():
        raise BadInput(f"{name}={shown(raw)}: expected an IP address such as 127.0.0.1")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise BadInput(f"{name}={shown(raw)}: expected an IP address such as 127.0.0.1") from None


def parse_host(name: str, raw: str, text: str | None = None) -> str:
    """An IPv4 address, a bracketed IPv6 address (returned without brackets), or a DNS name
    made of RFC 1123 labels. `text` is the part of `raw` that holds the host."""
    host = raw if text is None else text
    bad = BadInput(f"{name}={shown(raw)}: expected a host: an IPv4 address, [IPv6] or a DNS name")
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if "%" in inner or not inner.isascii():
            raise bad
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise bad from None
    if not host or len(host) > 253 or not host.isascii():
        raise bad
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise bad from None
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise bad
    return host.lower()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class HostPort:
    """A host (IP or DNS name, IPv6 without brackets) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        """`host:port` as nginx and URLs write it (IPv6 in brackets)."""
        return f"{_bracketed(self.host)}:{self.port}"


def parse_hostport(name: str, raw: str) -> HostPort:
    """`HOST:PORT` (`[IPv6]:PORT` for IPv6); port 1-65535."""
    text = str(raw).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise BadInput(f"{name}={shown(raw)}: expected HOST:PORT such as 127.0.0.1:3000")
    if ":" in host and not host.startswith("["):
        raise BadInput(f"{name}={shown(raw)}: write an IPv6 address in brackets: [::1]:3000")
    return HostPort(parse_host(name, raw, host), parse_port(name, raw, port))


@dataclass(frozen=True)
class BackendUrl:
    """The base URL of an external backend, parsed into scheme, host and port."""

    scheme: Literal["http", "https"]
    host: str
    port: int

    @property
    def address(self) -> HostPort:
        return HostPort(self.host, self.port)

    def __str__(self) -> str:
        """The base URL rebuilt from its parts (no trailing slash)."""
        return f"{self.scheme}://{self.address}"


def parse_backend_url(name: str, raw: str) -> BackendUrl:
    """`http[s]://HOST[:PORT][/]`: no path, query, user info or whitespace; port 1-65535
    (80 or 443 when absent)."""
    text = str(raw).strip()
    match = _URL.fullmatch(text)
    if match is None:
        raise BadInput(f"{name}={shown(raw)}: expected a base URL such as http://10.0.0.5:3001 "
                       "(http or https, a host, an optional port, no path)")
    scheme, host_text, port_text, _slash = match.groups()
    host = parse_host(name, raw, host_text)
    if port_text is None:
        port = 443 if scheme == "https" else 80
    else:
        port = parse_port(name, raw, port_text)
    return BackendUrl("https" if scheme == "https" else "http", host, port)
