"""Download and unpack public datasets once: resumable, checksummed, idempotent.

A download goes to `<name>.part` and continues from where it stopped (HTTP Range)
after a dropped connection or a Ctrl-C; only a file whose size and SHA-256 match
is renamed into place, and it is unpacked into a fresh folder that is marked
complete last, so a second call finds the marker and does nothing.
"""
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MARKER = ".hark-complete"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    name: str           # folder the archive unpacks into
    url: str
    size: int = 0       # bytes; 0 = unknown
    sha256: str = ""    # hex; "" = unknown
    source: str = ""    # where the checksum comes from


# Size and SHA-256 as published by TensorFlow Datasets (speech_commands checksums.tsv)
# and torchaudio (SPEECHCOMMANDS _CHECKSUMS); GCS serves ETag 6b74f390...829835 (MD5).
DATASETS = {
    "speech-commands": Archive(
        name="speech_commands_v0.02",
        url="http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        size=2428923189,
        sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        source="TensorFlow Datasets / torchaudio"),
}


class FetchError(RuntimeError):
    """A download or unpack failed; the message says what to do."""


def cache_dir() -> Path:
    """hark's cache: $HARK_CACHE, else $XDG_CACHE_HOME/hark, else ~/.cache/hark (datasets here,
    the teacher's embeddings and heads in teacher/)."""
    if os.environ.get("HARK_CACHE"):
        return Path(os.environ["HARK_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hark"


def sha256_file(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h


def download(url: str, target: Path, size: int = 0, sha256: str = "", retries: int = 3,
             progress: bool = True, timeout: float = 60, backoff: float = 2.0) -> Path:
    """Fetch url to target through target.part, resuming with HTTP Range.

    Retries a dropped connection `retries` times (each time from where it stopped); if
    it still fails the .part file stays so the next call resumes. Raises FetchError on
    a size or checksum mismatch (and deletes the .part: its bytes are wrong).
    """
    from tqdm import tqdm
    target = Path(target)
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    state = _State(part)
    bar = tqdm(total=size or None, initial=state.have, unit="B", unit_scale=True,
               unit_divisor=1024, desc=target.name, disable=not progress)
    attempt = 0
    try:
        while True:
            try:
                _get(url, state, size, bar, timeout)
                break
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 \
                        and exc.code not in (408, 429):
                    raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
                unreachable = _unreachable(url, exc)
                if unreachable:   # retrying a missing network only makes the user wait
                    raise FetchError(unreachable + _resume_note(state, part)) from None
                attempt += 1
                if attempt > retries:
                    raise FetchError(f"download of {url} interrupted after {state.have} bytes "
                                     f"({exc})" + _resume_note(state, part)) from None
                time.sleep(backoff * 2 ** (attempt - 1))
    finally:
        bar.close()
    if size and state.have != size:
        part.unlink()
        raise FetchError(f"{url}: got {state.have} bytes, expected {size}; the partial file "
                         "was deleted, run the command again to download afresh")
    digest = state.hash.hexdigest()
    if sha256 and digest != sha256.lower():
        part.unlink()
        raise FetchError(f"{url}: SHA-256 mismatch (got {digest}, expected {sha256}); the "
                         "download was deleted. Run again; if it repeats, the server copy "
                         "differs from the published one")
    part.replace(target)
    return target


def _unreachable(url: str, exc: Exception) -> str:
    """The message for a host that cannot be reached at all, else ''."""
    reason = getattr(exc, "reason", exc)
    host = urllib.parse.urlsplit(url).hostname
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host {host} ({reason.strerror}): no network, or no DNS?"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection: is the address right, or is a proxy needed?"
    return ""


def _resume_note(state, part: Path) -> str:
    if state.have:
        return f"; run the same command again to resume from {part} ({state.have} bytes)"
    return "; nothing was written, run the same command again when the network is back"


class _State:
    """Bytes on disk in the .part file and their running SHA-256."""

    def __init__(self, part: Path):
        self.part = part
        self.have = part.stat().st_size if part.exists() else 0
        self.hash = sha256_file(part) if self.have else hashlib.sha256()


def _get(url, state, size, bar, timeout):
    """One HTTP request appending the rest of the file to the .part file."""
    if size and state.have >= size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": "hark-fetch"})
    if state.have:
        request.add_header("Range", f"bytes={state.have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and state.have:   # nothing left to send: the .part is whole
            return
        raise
    with response:
        if state.have and response.status != 206:   # server ignored Range: start over
            state.have, state.hash = 0, hashlib.sha256()
            bar.reset(total=bar.total)
        expected = response.headers.get("Content-Length")
        got = 0
        with open(state.part, "ab" if state.have else "wb") as f:
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                state.hash.update(block)
                state.have += len(block)
                got += len(block)
                bar.update(len(block))
        if expected is not None and got < int(expected):
            raise http.client.IncompleteRead(b"", int(expected) - got)


def extract(archive: Path, dest: Path, progress: bool = True) -> Path:
    """Unpack a tar(.gz) into dest (a new folder, built beside it and renamed into place)."""
    from tqdm import tqdm
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".extracting")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar, \
                tqdm(unit=" files", desc="unpacking", disable=not progress) as bar:
            for member in tar:   # streamed: the member list of a .gz is not read up front
                tar.extract(member, tmp, filter="data")   # refuses absolute paths, "..", devices
                bar.update()
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"cannot unpack {archive}: {exc}") from None
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def fetch(archive: Archive, root=None, keep_archive=False, retries=3, progress=True,
          log=print, backoff=2.0) -> Path:
    """Make root/<archive.name>/ hold the unpacked dataset; do nothing if it already does."""
    root = Path(root) if root else cache_dir()
    dest = root / archive.name
    if (dest / MARKER).exists():
        log(f"{dest}: already downloaded and unpacked")
        return dest
    if not archive.sha256:
        log(f"note: no published SHA-256 for {archive.url}; only the length is checked")
    tarball = root / (archive.name + ".tar.gz")
    if tarball.exists():   # kept from an earlier run, or put there by hand: check it
        if archive.sha256 and sha256_file(tarball).hexdigest() != archive.sha256.lower():
            raise FetchError(f"{tarball} does not match the published SHA-256 "
                             f"{archive.sha256}; delete it and run again")
    else:
        download(archive.url, tarball, archive.size, archive.sha256, retries, progress,
                 backoff=backoff)
        log(f"downloaded {tarball} ({tarball.stat().st_size} bytes"
            f"{', SHA-256 verified' if archive.sha256 else ''})")
    log(f"unpacking into {dest} ...")
    extract(tarball, dest, progress)
    (dest / MARKER).write_text(f"{archive.url}\nsha256 {archive.sha256 or 'unknown'}\n")
    if not keep_archive:
        tarball.unlink()
    return dest
