"""Fetching an image's bytes from its URI, within the limits the operator configured.

``file://`` only inside the configured roots, ``data:`` up to the size cap, ``http(s)://``
only to allow-listed hosts (none by default). Anything else is refused with a FetchError
that says why, naming the URI as the producer wrote it (never where a link points).

Files are opened first and checked afterwards, on the opened descriptor: it must be a
regular file (a FIFO or a device would block or never end), its real path (the kernel's,
from /proc/self/fd) must lie inside a root, so renaming a folder between a check and the
open cannot lead outside, and a hard link to an outside file is refused. At most the cap is
read. An http fetch has one deadline for the whole exchange, so a server that drips a byte
every few seconds cannot hold the worker.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlparse

from columnist.errors import BadInput, ColumnistError
from columnist.files import FileRefused, file_uri_path, open_nonblocking, read_at_most, regular_status
from columnist.models import media
from columnist.printable import printable
from columnist.records import ImageLimits

MAX_URI_CHARS = 8_192
"""Longest file:// or http(s):// URI (data: URIs are bounded by the image size cap)."""


class FetchError(BadInput, ValueError):
    """A URI that is not fetched; the message says why."""


class WorkerOutOfResources(ColumnistError, RuntimeError):
    """Not the event's fault: this process ran out of file descriptors or memory while
    fetching. The batch is retried rather than the event dead-lettered."""


@dataclass(frozen=True)
class FetchPolicy:
    roots: list[Path] = field(default_factory=list)
    allowed_hosts: set[str] = field(default_factory=set)
    max_bytes: int = ImageLimits().max_bytes
    http_timeout: float = 20.0
    """Seconds for a whole http exchange: connect, headers and body."""
    allow_hard_links: bool = False
    """Read files that have several names (a hard link can name a file outside the roots)."""
    max_video_bytes: int = ImageLimits().max_video_bytes
    """The cap of a URI whose name says it is a video (.mp4, .mov, ...)."""


def policy_from(settings, roots: list[Path] | None = None) -> FetchPolicy:
    """The policy the settings describe (COLUMNIST_IMAGE_ROOTS, _HTTP_ALLOW, the size caps),
    with other ``roots`` when given."""
    return FetchPolicy(settings.roots if roots is None else roots, settings.allowed_hosts, settings.max_image_bytes,
                       settings.http_timeout, settings.allow_hard_links, settings.max_video_bytes)


def fetch(uri: str, policy: FetchPolicy) -> bytes:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme != "data" and media.suffix_kind(uri) == media.VIDEO:
        policy = replace(policy, max_bytes=max(policy.max_bytes, policy.max_video_bytes))
    if scheme == "data":
        return _fetch_data(uri, policy)
    if len(uri) > MAX_URI_CHARS:
        raise FetchError(f"URI of {len(uri):,} characters is over the limit of {MAX_URI_CHARS:,}")
    if scheme == "file":
        return _fetch_file(uri, policy)
    if scheme in ("http", "https"):
        return _fetch_http(uri, policy)
    raise FetchError(f"unsupported URI scheme {scheme[:20] or '(none)'!r} in '{printable(uri, 100)}': "
                     "use file://, data: or http(s)://")


# -- file:// -------------------------------------------------------------------------------

def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _fetch_file(uri: str, policy: FetchPolicy) -> bytes:
    try:
        parsed = urlparse(uri)
    except ValueError as err:
        raise FetchError(f"malformed file URI '{printable(uri)}': {err}") from None
    if parsed.netloc not in ("", "localhost"):
        raise FetchError(f"file URI '{printable(uri)}' names a host; only local files can be read")
    given = file_uri_path(parsed.path)
    if "\x00" in given:
        raise FetchError(f"file URI '{printable(uri)}' contains a NUL byte")
    if not policy.roots:
        raise FetchError(f"{printable(given)} cannot be read: no image roots are configured (set COLUMNIST_IMAGE_ROOTS)")
    try:
        resolved = Path(given).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop
        raise FetchError(f"{printable(given)}: cannot resolve the path ({err.__class__.__name__})") from None
    if not _inside(resolved, policy.roots):  # refuse early, before touching the file
        raise FetchError(f"{printable(given)} is outside the image roots ({', '.join(map(str, policy.roots))})")
    fd = _open(resolved, given)
    try:
        return _read_regular_file(fd, given, policy)
    finally:
        os.close(fd)


_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR, errno.EAGAIN}
_OPEN_ERRORS = {"ENOENT": "file not found", "ENOTDIR": "a part of the path is not a folder",
                "ELOOP": "the path changed into a symbolic link while it was opened",
                "ENAMETOOLONG": "the file name is too long", "EACCES": "permission denied",
                "ENXIO": "not a regular file (a socket or an unconnected FIFO)"}


def _open(path: Path, given: str) -> int:
    """Open without blocking (a FIFO would) and without following a final symlink."""
    try:
        return open_nonblocking(path, nofollow=True)
    except OSError as err:
        if err.errno in _OUT_OF_RESOURCES:
            raise WorkerOutOfResources(f"opening {printable(given)}: {err.strerror}") from None
        reason = _OPEN_ERRORS.get(errno.errorcode.get(err.errno or 0, ""), err.strerror or type(err).__name__)
        raise FetchError(f"{printable(given)}: {reason}") from None


def _read_regular_file(fd: int, given: str, policy: FetchPolicy) -> bytes:
    try:
        return _read_checked(fd, given, policy)
    except FileRefused as err:
        raise FetchError(str(err)) from None


def _read_checked(fd: int, given: str, policy: FetchPolicy) -> bytes:
    info = regular_status(fd, given)
    real = _real_path(fd)
    if real is not None and not _inside(real, policy.roots):
        raise FetchError(f"{printable(given)} is outside the image roots (it moved while it was opened)")
    if info.st_nlink > 1 and not policy.allow_hard_links:
        raise FetchError(f"{printable(given)} has {info.st_nlink} hard links; files with several names are not read "
                         "(one may lie outside the roots; COLUMNIST_ALLOW_HARD_LINKS=1 allows them)")
    return read_at_most(fd, policy.max_bytes, given, info)


def _real_path(fd: int) -> Path | None:
    """Where the opened descriptor really is (Linux); None where /proc is not available."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


# -- data: ---------------------------------------------------------------------------------

def _fetch_data(uri: str, policy: FetchPolicy) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise FetchError("data URI has no ',' before its payload")
    if len(payload) > policy.max_bytes * 3 + 4:  # no encoding is longer than 3 characters a byte
        raise FetchError(f"data URI payload is over the limit of {policy.max_bytes:,} bytes")
    if header.endswith(";base64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as err:
            raise FetchError(f"data URI is not valid base64: {err}") from None
    else:
        data = unquote_to_bytes(payload)
    if len(data) > policy.max_bytes:
        raise FetchError(f"data URI holds {len(data):,} bytes, over the limit of {policy.max_bytes:,} bytes")
    return data


# -- http(s):// ----------------------------------------------------------------------------

def _fetch_http(uri: str, policy: FetchPolicy) -> bytes:
    try:
        parsed = urlparse(uri)
        host, port = (parsed.hostname or "").lower(), parsed.port
    except ValueError as err:  # a bad port, an unclosed [IPv6 bracket
        raise FetchError(f"malformed URL '{printable(uri)}': {err}") from None
    if parsed.username is not None or parsed.password is not None:
        raise FetchError(f"URL {parsed.scheme}://…@{host}{':' + str(port) if port else ''}{parsed.path[:100]} carries "
                         "credentials; they are not supported (they would be stored and logged with the URI)")
    if host not in policy.allowed_hosts:
        raise FetchError(f"host {host[:100]!r} is not on the http allow-list (COLUMNIST_HTTP_ALLOW)")
    import asyncio

    return asyncio.run(_get(uri, policy))


async def _get(uri: str, policy: FetchPolicy) -> bytes:
    import asyncio

    import aiohttp

    timeout = aiohttp.ClientTimeout(total=policy.http_timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "columnist"}) as session:
            async with session.get(uri, allow_redirects=False) as response:
                if 300 <= response.status < 400:
                    raise FetchError(f"{printable(uri)} redirects to {response.headers.get('Location', '?')[:200]}; "
                                     "redirects are not followed")
                if response.status != 200:
                    raise FetchError(f"{printable(uri)} answered HTTP {response.status}")
                data = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    data += chunk
                    if len(data) > policy.max_bytes:
                        raise FetchError(f"{printable(uri)} is over the limit of {policy.max_bytes:,} bytes")
                return bytes(data)
    except FetchError:
        raise
    except asyncio.TimeoutError:
        raise FetchError(f"{printable(uri)} did not answer in full within {policy.http_timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as err:
        if getattr(getattr(err, "os_error", err), "errno", None) in _OUT_OF_RESOURCES:
            raise WorkerOutOfResources(f"fetching {printable(uri)}: {err}") from None
        raise FetchError(f"cannot fetch {printable(uri)}: {type(err).__name__}: {str(err)[:200]}") from None
