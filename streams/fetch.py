"""Fetching an image's bytes from its URI, within the limits the operator configured.

``file://`` only inside the configured roots (after resolving symlinks and ``..``),
``data:`` up to the size cap, ``http(s)://`` only to allow-listed hosts (none by default).
Anything else is refused with a FetchError that says why.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse


class FetchError(ValueError):
    pass


@dataclass(frozen=True)
class FetchPolicy:
    roots: list[Path] = field(default_factory=list)
    allowed_hosts: set[str] = field(default_factory=set)
    max_bytes: int = 50_000_000
    http_timeout: float = 10.0


def fetch(uri: str, policy: FetchPolicy) -> bytes:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "file":
        return _fetch_file(uri, policy)
    if scheme == "data":
        return _fetch_data(uri, policy)
    if scheme in ("http", "https"):
        return _fetch_http(uri, policy)
    raise FetchError(f"unsupported URI scheme {scheme or '(none)'!r} in {uri[:100]!r}: use file://, data: or http(s)://")


def _fetch_file(uri: str, policy: FetchPolicy) -> bytes:
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise FetchError(f"file URI {uri!r} names a host; only local files can be read")
    path = Path(unquote(parsed.path)).resolve()
    if not any(path.is_relative_to(root) for root in policy.roots):
        roots = ", ".join(map(str, policy.roots)) or "none configured (set COLUMNIST_IMAGE_ROOTS)"
        raise FetchError(f"{path} is outside the image roots ({roots})")
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise FetchError(f"{path} is {size:,} bytes, over the limit of {policy.max_bytes:,} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise FetchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FetchError(f"{path}: is a directory") from None
    except PermissionError:
        raise FetchError(f"{path}: permission denied") from None


def _fetch_data(uri: str, policy: FetchPolicy) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise FetchError("data URI has no ',' before its payload")
    if len(payload) > policy.max_bytes * 4 // 3 + 4:
        raise FetchError(f"data URI payload is over the limit of {policy.max_bytes:,} bytes")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as err:
            raise FetchError(f"data URI is not valid base64: {err}") from None
    return unquote(payload).encode("latin-1", errors="replace")


def _fetch_http(uri: str, policy: FetchPolicy) -> bytes:
    import urllib.request

    host = (urlparse(uri).hostname or "").lower()
    if host not in policy.allowed_hosts:
        raise FetchError(f"host {host!r} is not on the http allow-list (COLUMNIST_HTTP_ALLOW)")

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """A redirect could lead off the allow-list: refuse it."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            raise FetchError(f"{uri} redirects to {newurl}; redirects are not followed")

    opener = urllib.request.build_opener(NoRedirects)
    request = urllib.request.Request(uri, headers={"User-Agent": "columnist"})
    try:
        with opener.open(request, timeout=policy.http_timeout) as response:
            data = response.read(policy.max_bytes + 1)
    except OSError as err:
        raise FetchError(f"cannot fetch {uri}: {err}") from None
    if len(data) > policy.max_bytes:
        raise FetchError(f"{uri} is over the limit of {policy.max_bytes:,} bytes")
    return data
