"""Where image bytes may come from: roots, data: caps, the http allow-list."""

import base64
import http.server
import os
import threading
from pathlib import Path

import pytest

from columnist.worker.fetch import FetchError, FetchPolicy, fetch


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "secret.txt").write_text("outside")
    (folder / "link.jpg").symlink_to(tmp_path / "secret.txt")
    return folder


def test_file_inside_the_roots(root):
    assert fetch((root / "a.jpg").as_uri(), FetchPolicy([root.resolve()])) == b"jpeg bytes"


def test_a_file_name_that_is_not_utf8_is_found_from_its_percent_encoded_uri(root):
    latin1 = root / os.fsdecode(b"m\xffoon.jpg")  # an old archive's name: one Latin-1 byte
    latin1.write_bytes(b"latin-1 named")
    uri = latin1.as_uri()
    assert uri.endswith("/m%FFoon.jpg")
    assert fetch(uri, FetchPolicy([root.resolve()])) == b"latin-1 named"


@pytest.mark.parametrize("name, reason", [
    ("../secret.txt", "outside the image roots"),
    ("link.jpg", "outside the image roots"),  # a symlink pointing out is resolved first
    ("missing.jpg", "file not found"),
])
def test_file_refusals(root, name, reason):
    with pytest.raises(FetchError, match=reason):
        fetch(f"file://{root}/{name}", FetchPolicy([root.resolve()]))


def test_no_roots_means_no_files(root):
    with pytest.raises(FetchError, match="no image roots are configured"):
        fetch((root / "a.jpg").as_uri(), FetchPolicy([]))


def test_file_size_cap(root):
    with pytest.raises(FetchError, match="over the limit of 4 bytes"):
        fetch((root / "a.jpg").as_uri(), FetchPolicy([root.resolve()], max_bytes=4))


def test_data_uris():
    payload = base64.b64encode(b"\x89PNG...").decode()
    assert fetch(f"data:image/png;base64,{payload}", FetchPolicy()) == b"\x89PNG..."
    with pytest.raises(FetchError, match="not valid base64"):
        fetch("data:image/png;base64,@@@", FetchPolicy())
    with pytest.raises(FetchError, match="over the limit"):
        fetch("data:image/png;base64," + "A" * 1000, FetchPolicy(max_bytes=100))


def test_unknown_scheme_and_http_off_by_default():
    with pytest.raises(FetchError, match="unsupported URI scheme 'gopher'"):
        fetch("gopher://x/y", FetchPolicy())
    with pytest.raises(FetchError, match="not on the http allow-list"):
        fetch("http://127.0.0.1:1/a.jpg", FetchPolicy())


@pytest.fixture
def loopback_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://example.com/elsewhere.jpg")
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"image from loopback")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_http_to_an_allowed_host_without_redirects(loopback_server):
    policy = FetchPolicy(allowed_hosts={"127.0.0.1"})
    assert fetch(f"{loopback_server}/a.jpg", policy) == b"image from loopback"
    with pytest.raises(FetchError, match="redirects are not followed"):
        fetch(f"{loopback_server}/redirect", policy)


def test_only_regular_files_are_read_and_nothing_blocks(tmp_path):
    import os

    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo.jpg")  # opening it for reading would block until a writer came
    with pytest.raises(FetchError, match=": a FIFO, not a regular file"):
        fetch((root / "fifo.jpg").as_uri(), FetchPolicy([root.resolve()]))
    with pytest.raises(FetchError, match=": a character device, not a regular file"):
        fetch("file:///dev/zero", FetchPolicy([Path("/dev")]))  # it would read forever


def test_the_root_check_holds_for_the_opened_descriptor(tmp_path):
    """What a rename race would produce: a descriptor of a file outside the roots."""
    import os

    from columnist.worker.fetch import _read_regular_file

    (tmp_path / "outside.jpg").write_bytes(b"outside")
    (tmp_path / "root").mkdir()
    fd = os.open(tmp_path / "outside.jpg", os.O_RDONLY)
    try:
        with pytest.raises(FetchError, match="moved while it was opened"):
            _read_regular_file(fd, "/root/a.jpg", FetchPolicy([(tmp_path / "root").resolve()]))
    finally:
        os.close(fd)


def test_hard_links_are_refused_unless_allowed(tmp_path):
    import os

    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"outside")
    os.link(tmp_path / "outside.jpg", root / "a.jpg")
    with pytest.raises(FetchError, match="2 hard links"):
        fetch((root / "a.jpg").as_uri(), FetchPolicy([root.resolve()]))
    assert fetch((root / "a.jpg").as_uri(), FetchPolicy([root.resolve()], allow_hard_links=True)) == b"outside"


def test_refusals_name_the_uri_not_a_link_target(root):
    with pytest.raises(FetchError) as caught:
        fetch(f"file://{root}/link.jpg", FetchPolicy([root.resolve()]))
    assert "link.jpg" in str(caught.value) and "secret" not in str(caught.value)


def test_raw_data_uris_are_capped_after_decoding():
    with pytest.raises(FetchError, match="holds 26,000 bytes, over the limit of 20,000"):
        fetch("data:," + "A" * 26_000, FetchPolicy(max_bytes=20_000))


@pytest.fixture
def dripping_server():
    """An http server that sends one byte every 0.3 s for as long as the client listens."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve():
        connection, _ = listener.accept()
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        with connection:
            while not stop.is_set():
                try:
                    connection.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.3)  # the drip itself, not a synchronisation

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_a_dripping_http_server_is_cut_off_at_the_deadline(dripping_server):
    with pytest.raises(FetchError, match="did not answer in full within 1.5 s"):
        fetch(f"{dripping_server}/slow.jpg", FetchPolicy(allowed_hosts={"127.0.0.1"}, http_timeout=1.5))


def test_percent_encoded_data_uris_keep_their_bytes():
    assert fetch("data:,%FF%D8%00a", FetchPolicy()) == b"\xff\xd8\x00a"
