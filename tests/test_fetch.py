"""hark data fetch: resumable, checksummed, idempotent download + unpack from a local server."""
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from hark.cli import main
from hark.training import fetch as F
from helpers import fmt, riff

FILES = {"yes/a_nohash_0.wav": riff([(b"fmt ", fmt()), (b"data", b"\1\0" * 2000)]),
         "no/b_nohash_0.wav": riff([(b"fmt ", fmt()), (b"data", b"\2\0" * 2450)]),
         "validation_list.txt": b"no/b_nohash_0.wav\n"}


def make_tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server(http.server.ThreadingHTTPServer):
    """Serves one blob at any path; can honour Range, and cut a response short."""
    payload = b""
    ranges = True
    truncate = 0          # this many next responses stop half-way
    requests: list

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        data, start = srv.payload, 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.truncate:
            srv.truncate -= 1
            body = body[:len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Server()
    srv.payload = make_tar(FILES)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def archive_for(srv, **kw):
    data = srv.payload
    return F.Archive(name="tiny", url=f"http://127.0.0.1:{srv.server_address[1]}/tiny.tar.gz",
                     size=len(data), sha256=hashlib.sha256(data).hexdigest(), **kw)


def fetch(archive, root, **kw):
    return F.fetch(archive, root, progress=False, log=lambda m: None, backoff=0, **kw)


def test_fetch_unpacks_once(server, tmp_path):
    dest = fetch(archive_for(server), tmp_path)
    assert dest == tmp_path / "tiny"
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert (dest / F.MARKER).exists()
    assert not list(tmp_path.glob("tiny.tar.gz*"))      # archive removed by default
    n = len(server.requests)
    assert fetch(archive_for(server), tmp_path) == dest
    assert len(server.requests) == n                     # second call: no download


def test_dropped_connection_resumes_with_range(server, tmp_path):
    server.truncate = 1
    dest = fetch(archive_for(server), tmp_path, retries=1)
    half = len(server.payload) // 2
    assert server.requests == [None, f"bytes={half}-"]
    assert (dest / "yes/a_nohash_0.wav").read_bytes() == FILES["yes/a_nohash_0.wav"]


def test_interrupted_download_resumes_on_next_call(server, tmp_path):
    server.truncate = 1
    with pytest.raises(F.FetchError, match="run the same command again to resume"):
        fetch(archive_for(server), tmp_path, retries=0)
    part = tmp_path / "tiny.tar.gz.part"
    assert 0 < part.stat().st_size < len(server.payload)
    assert not (tmp_path / "tiny").exists()
    have = part.stat().st_size
    fetch(archive_for(server), tmp_path, keep_archive=True)
    assert server.requests[-1] == f"bytes={have}-"
    assert (tmp_path / "tiny.tar.gz").read_bytes() == server.payload
    assert not part.exists()


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    server.ranges = False
    (tmp_path / "tiny.tar.gz.part").write_bytes(b"stale bytes from another file")
    dest = fetch(archive_for(server), tmp_path, keep_archive=True)
    assert (tmp_path / "tiny.tar.gz").read_bytes() == server.payload
    assert (dest / "validation_list.txt").read_bytes() == FILES["validation_list.txt"]


def test_checksum_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    bad = archive_for(server)
    bad = F.Archive(bad.name, bad.url, bad.size, "0" * 64)
    with pytest.raises(F.FetchError, match="SHA-256 mismatch"):
        fetch(bad, tmp_path)
    assert not list(tmp_path.iterdir())


def test_archive_escaping_its_folder_is_refused(server, tmp_path):
    server.payload = make_tar({"../evil.txt": b"x"})
    with pytest.raises(F.FetchError, match="cannot unpack"):
        fetch(archive_for(server), tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "cache" / "tiny").exists()


def test_cli_fetch_then_info(server, tmp_path, capsys):
    url = archive_for(server).url
    sha = hashlib.sha256(server.payload).hexdigest()
    args = ["data", "fetch", "speech-commands", "--dest", str(tmp_path), "--url", url,
            "--sha256", sha]
    assert main(args) == 0
    dest = tmp_path / "speech_commands_v0.02"
    assert f"hark train --data {dest}" in capsys.readouterr().out
    assert main(args) == 0
    assert "already downloaded" in capsys.readouterr().out
    assert main(["data", "info", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "2 readable clips, 2 words" in out
    line = next(l for l in out.splitlines() if l.startswith("no "))
    assert line.split()[1:] == ["no", "0", "1", "0", "1"]
    assert main(args[:-1] + ["0" * 64]) == 0            # already there: not downloaded again
    assert main(["data", "fetch", "speech-commands", "--dest", str(tmp_path / "x"), "--url", url,
                 "--sha256", "0" * 64]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err


def test_published_checksum_of_speech_commands():
    sc = F.DATASETS["speech-commands"]
    assert sc.size == 2428923189
    assert sc.sha256 == "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"


def test_no_network_fails_at_once_and_says_so(tmp_path, monkeypatch, capsys):
    """No DNS: one clear line within a second, no retries, no mention of a .part to resume."""
    import socket
    import time

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setenv("HARK_DATA_DIR", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(F.FetchError) as err:
        F.download("http://data.example/x.tar.gz", tmp_path / "x.tar.gz", progress=False)
    assert time.monotonic() - started < 1
    assert "cannot resolve host data.example" in str(err.value) and "no network" in str(err.value)
    assert ".part" not in str(err.value) and not list(tmp_path.iterdir())


def test_refused_connection_fails_at_once(tmp_path):
    import socket
    with socket.socket() as s:            # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(F.FetchError, match="refused the connection"):
        F.download(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False, backoff=5)
