"""A user's checkout is not the development machine: no absolute path of it in what we ship."""
import subprocess

from hark import REPO

BINARY = (".hark", ".tflite", ".keras", ".wav", ".flac", ".png", ".npz")


def _tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in names:
        path = REPO / name
        if name == "tests/test_portable.py" or not path.is_file() or path.suffix in BINARY:
            continue
        try:
            yield name, path.read_text()
        except UnicodeDecodeError:
            continue


def test_no_machine_paths_in_tracked_files():
    """The shared folder is `../shared` (or $HARK_SHARED_DATA), REFERENCE.md is named, and a
    pseudo-terminal lives in a folder the command makes, never at a fixed temp path."""
    shared = str((REPO.parent / "shared").resolve())
    forbidden = {shared, str(REPO.resolve()), "/work/shared", "/tmp/ttyMP"}
    found = [f"{name}: {word}" for name, text in _tracked_text_files()
             for word in forbidden if word in text]
    assert not found, found
