"""Shared fixtures: paths, the MicroPython unix port, the shared dataset."""
import os
import subprocess
from pathlib import Path

import pytest

from hark.unixport import micropython_binary

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"


def _find_shared_data() -> Path:
    """$HARK_SHARED_DATA, else ../shared/data/speech_commands next to the checkout."""
    candidates = [os.environ.get("HARK_SHARED_DATA"),
                  REPO.parent / "shared" / "data" / "speech_commands"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c).resolve()
    return Path(candidates[1])


SHARED_DATA = _find_shared_data()


def make_variable(name: str, *assignments) -> list:
    """A Makefile variable as make expands it (with command-line assignments), split in words."""
    out = subprocess.run(["make", "-s", "-f", "Makefile", "-f", "-", "show", *assignments],
                         input=f"show:\n\t@echo $({name})\n", cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def run_micropython(code: str, *args, heapsize: str = "2M", cwd=None, stdin=None, timeout=600):
    """Run code in the real MicroPython unix port with firmware/ on its path."""
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:.frozen")
    cmd = [micropython_binary(), "-X", f"heapsize={heapsize}", "-c", code, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=stdin is None or isinstance(stdin, str),
                          input=stdin, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def mpy():
    return run_micropython


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared Speech Commands data not found at {SHARED_DATA}")
    return SHARED_DATA
