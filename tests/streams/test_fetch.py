"""Where image bytes may come from: roots, data: caps, the http allow-list."""

import base64
import http.server
import threading

import pytest

from streams.fetch import FetchError, FetchPolicy, fetch


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
