"""The README's first command, as a new machine runs it: `make demo` builds its own venv from
requirements/demo.txt alone (no training packages) and runs both demos through the firmware."""
import subprocess

from hark import REPO


def test_make_demo_runs_in_its_own_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run(["make", "--no-print-directory", "demo", f"VENV={venv}"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "command clips: heard the right word in" in r.stdout
    # the assistant stream scored against its word times (`hark simulate --events`)
    assert "detected 8/8" in r.stdout and "false accepts 0 " in r.stdout, r.stdout[-2000:]
    # nothing of the training stack came in with it
    have = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"],
                          capture_output=True, text=True).stdout.lower()
    assert "tensorflow" not in have and "librosa" not in have, have
