"""Building the firmware for every architecture and deploying it, end to end, to the real
MicroPython unix port behind a pseudo-terminal (socat), the way mpremote talks to a board."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hark import FIRMWARE_DIR, MODELS_DIR, REPO, boards
from hark.cli import HarkError, main
from hark.deploy import TMP_PREFIX, build, compile_module, firmware_sources
from helpers import fake_blob


HARK = [str(Path(sys.executable).with_name("hark"))]
ARCHES = ["xtensawin", "armv6m", "armv7m", "armv7emsp", "rv32imc", "x64"]
ARCH_CODE = {"x64": 2, "armv6m": 4, "armv7m": 5, "armv7emsp": 7, "xtensawin": 10, "rv32imc": 11}
VIPER = "import micropython\n@micropython.viper\ndef f(b, n: int) -> int:\n p = ptr8(b)\n s = 0\n" \
        " for i in range(n):\n  s += p[i] * 3\n return s\n"


@pytest.mark.parametrize("arch", ARCHES)
def test_mpy_cross_builds_every_firmware_module(arch, tmp_path):
    """Every module in firmware/ (and a viper probe) compiles; native code is tagged with the arch."""
    probe = tmp_path / "probe.py"
    probe.write_text(VIPER)
    for source in [probe] + sorted(FIRMWARE_DIR.glob("*.py")):
        out = tmp_path / (source.stem + ".mpy")
        compile_module(source, arch, out)
        head = out.read_bytes()[:3]
        assert head[:2] == b"M\x06", source
        assert head[2] >> 2 in (0, ARCH_CODE[arch]), f"{source}: arch field {head[2] >> 2}"
    assert (tmp_path / "probe.mpy").read_bytes()[2] >> 2 == ARCH_CODE[arch]


def test_mpy_cross_failure_names_the_file(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n")
    with pytest.raises(HarkError, match=r"mpy-cross -march=armv6m failed on .*broken\.py"):
        compile_module(bad, "armv6m", tmp_path / "broken.mpy")


def test_firmware_without_main_is_refused(tmp_path):
    (tmp_path / "engine.py").write_text("x = 1\n")
    with pytest.raises(HarkError, match="no main.py"):
        firmware_sources(tmp_path)


@pytest.mark.parametrize("name", ["esp32-inmp441", "rp2040", "pyboard", "unix"])
def test_build_layout(name, tmp_path):
    board = boards.load(name)
    built = build(board, FIRMWARE_DIR, tmp_path)
    names = sorted(p.name for p in built)
    modules = sorted(p.stem for p in FIRMWARE_DIR.glob("*.py") if p.name != "main.py")
    assert names == sorted(["config.json", "main.py"] + [m + ".mpy" for m in modules])
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == names
    assert boards.validate(__import__("json").loads((tmp_path / name / "config.json").read_text()))


@pytest.fixture
def model(tmp_path):
    default = MODELS_DIR / "default.hark"
    if default.exists():
        return default
    return fake_blob(tmp_path / "fake.hark", payload_bytes=30_000)


@pytest.fixture
def unix_board(tmp_path):
    """The MicroPython unix port on a pseudo-terminal; yields (port, its working directory)."""
    if not shutil.which("socat"):
        pytest.fail("socat is not installed (make system-deps)")
    micropython = Path(sys.executable).with_name("micropython")
    device_dir = tmp_path / "device"
    device_dir.mkdir()
    port = tmp_path / "ttyMP"

    def start():
        proc = subprocess.Popen(
            ["socat", f"PTY,link={port},raw,echo=0", f"EXEC:{micropython},pty,raw,echo=0"],
            cwd=device_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            if port.exists():
                return proc
            time.sleep(0.01)
        proc.kill()
        pytest.fail("socat did not create the pseudo-terminal")

    proc = start()
    yield port, device_dir
    proc.terminate()
    proc.wait(timeout=10)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _deploy(port, model, build_dir, board="unix"):
    """`hark deploy` in this process (capturing nothing: the callers check files and exit codes)."""
    from contextlib import redirect_stdout
    from io import StringIO
    out = StringIO()
    with redirect_stdout(out):
        code = main(["deploy", "--board", board, "--port", str(port), "--model", str(model),
                     "--build-dir", str(build_dir)])
    return subprocess.CompletedProcess([], code, out.getvalue(), "")


def test_deploy_end_to_end(unix_board, model, tmp_path):
    port, device_dir = unix_board
    result = _deploy(port, model, tmp_path / "build")
    assert result.returncode == 0, result.stderr
    build_dir = tmp_path / "build" / "unix"
    expected = {p.name: _sha(p) for p in build_dir.iterdir()}
    expected["model.hark"] = _sha(model)
    if model.with_suffix(".cohort").exists():       # enrollment calibrates thresholds with it
        expected["model.cohort"] = _sha(model.with_suffix(".cohort"))
    landed = {p.name: _sha(p) for p in device_dir.iterdir()}
    assert landed == expected
    assert not [n for n in landed if n.startswith(TMP_PREFIX)]
    assert f"{len(expected)} file(s) updated, 0 unchanged" in result.stdout

    # The deployed modules import in the unix port (the .mpy files are for its architecture).
    modules = [p.stem for p in build_dir.glob("*.mpy")]
    if modules:
        run = subprocess.run([str(Path(sys.executable).with_name("micropython")), "-c",
                              "import " + ", ".join(modules)], cwd=device_dir,
                             capture_output=True, text=True, env={**os.environ, "MICROPYPATH": "."})
        assert run.returncode == 0, run.stderr

    again = _deploy(port, model, tmp_path / "build")
    assert again.returncode == 0, again.stderr
    assert "0 file(s) updated" in again.stdout


def test_frozen_deploy_removes_the_copies_that_would_shadow_the_image(unix_board, model, tmp_path):
    """After `hark firmware build --frozen` the board's .mpy files (imported before frozen modules:
    the working directory comes first on sys.path) must go; main.py, config and model stay."""
    from contextlib import redirect_stdout
    from io import StringIO

    from hark.deploy import deploy
    port, device_dir = unix_board
    assert _deploy(port, model, tmp_path / "build").returncode == 0
    (device_dir / "engine.py").write_text("stale = 1\n")
    assert (device_dir / "engine.mpy").is_file()
    with redirect_stdout(StringIO()):
        deploy(boards.load("unix"), str(port), model, build_dir=tmp_path / "build", frozen=True)
    cohort = ["model.cohort"] * model.with_suffix(".cohort").exists()
    assert sorted(p.name for p in device_dir.iterdir()) == ["config.json", "main.py", *cohort,
                                                            "model.hark"]


def test_deploy_a_profile_naming_a_word_to_enroll(unix_board, tmp_path):
    """A wake word the model lacks is refused unless the profile's enroll.words lists it; then
    deploy goes through and says to enroll it."""
    port, _ = unix_board
    board = json.loads((boards.BOARDS_DIR / "unix.json").read_text())
    board["grammar"] = {"mode": "wake", "wake_word": "marvin", "command_window_ms": 0}
    profile = tmp_path / "unix.json"
    profile.write_text(json.dumps(board))
    model = MODELS_DIR / "default.hark"
    refused = _deploy(port, model, tmp_path / "build", board=str(profile))
    assert refused.returncode == 1
    board["enroll"] = {"words": ["marvin"]}
    profile.write_text(json.dumps(board))
    result = _deploy(port, model, tmp_path / "build", board=str(profile))
    assert result.returncode == 0
    assert "enroll.words: marvin: teach each one with `hark enroll --board unix" in result.stdout


def test_interrupted_deploy_keeps_the_old_files(unix_board, tmp_path):
    port, device_dir = unix_board
    old_model = fake_blob(tmp_path / "old.hark", payload_bytes=20_000, seed=1)
    assert _deploy(port, old_model, tmp_path / "build").returncode == 0
    before = {p.name: _sha(p) for p in device_dir.iterdir()}

    # A bigger new model, so the copy takes long enough to be cut in the middle.
    new_model = fake_blob(tmp_path / "new.hark", payload_bytes=400_000, seed=2)
    proc = subprocess.Popen(HARK + ["deploy", "--board", "unix", "--port", str(port), "--model",
                                    str(new_model), "--build-dir", str(tmp_path / "build")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tmp_name = device_dir / (TMP_PREFIX + "model.hark")
    deadline = time.monotonic() + 60
    while not tmp_name.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert tmp_name.exists(), proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert {p.name: _sha(p) for p in device_dir.iterdir() if p.name in before} == before
    assert tmp_name.exists(), "the copy finished before the kill; make the new model bigger"

    # The next deploy cleans up and completes.
    result = _deploy(port, new_model, tmp_path / "build")
    assert result.returncode == 0, result.stderr
    assert _sha(device_dir / "model.hark") == _sha(new_model)
    assert not [p for p in device_dir.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_wrong_chip_is_refused(unix_board, model, tmp_path, capsys):
    port, device_dir = unix_board
    result = in_process(capsys, "deploy", "--board", "rp2040", "--port", port, "--model", model,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1
    assert "wrong chip" in result.stderr and "is for RP2040" in result.stderr
    assert list(device_dir.iterdir()) == []


def in_process(capsys, *args):
    """`hark ARGS` without a new interpreter, for commands that need no process of their own."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_no_board_at_port(tmp_path, model, capsys):
    result = in_process(capsys, "deploy", "--board", "unix", "--port", tmp_path / "ttyUSB9", "--model", model,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1
    assert "no board connected at" in result.stderr and "check the USB cable" in result.stderr
    assert "--port" in result.stderr


def test_budget_refusal_before_touching_the_board(tmp_path, capsys):
    big = fake_blob(tmp_path / "big.hark", payload_bytes=120_000)
    result = in_process(capsys, "deploy", "--board", "pyboard", "--port", tmp_path / "ttyUSB9",
                        "--model", big, "--build-dir", tmp_path / "build")
    assert result.returncode == 1
    assert "flash budget" in result.stderr and "KB over" in result.stderr
    assert "no board connected" not in result.stderr


def test_build_only_prints_footprint(tmp_path, model, capsys):
    result = in_process(capsys, "deploy", "--board", "rp2040", "--build-only", "--model", model,
                        "--build-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config.json" in result.stdout and "rp2040: flash" in result.stdout


def _flip_bit(src, dst, offset, bit=0):
    data = bytearray(Path(src).read_bytes())
    data[offset] ^= 1 << bit
    dst.write_bytes(bytes(data))
    return dst


def test_corrupt_model_is_not_deployed(unix_board, model, tmp_path, capsys):
    """One flipped bit in the blob: deploy refuses it before touching the board (the firmware
    would refuse it at boot), and --build-only fails too."""
    port, device_dir = unix_board
    bad = _flip_bit(model, tmp_path / "bitflip.hark", offset=model.stat().st_size // 2, bit=3)
    result = in_process(capsys, "deploy", "--board", "unix", "--port", port, "--model", bad,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1
    assert "CRC-32 mismatch" in result.stderr and "bitflip.hark" in result.stderr
    assert list(device_dir.iterdir()) == []
    result = in_process(capsys, "deploy", "--board", "unix", "--build-only", "--model", bad,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1 and "CRC-32 mismatch" in result.stderr


def test_flipped_version_bit_is_reported_as_corruption(tmp_path, model, capsys):
    bad = _flip_bit(model, tmp_path / "v.hark", offset=5, bit=0)     # version 3 -> 259
    result = in_process(capsys, "deploy", "--board", "unix", "--build-only", "--model", bad,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1
    assert "corrupted" in result.stderr and "update" not in result.stderr


def test_build_only_over_budget_fails(tmp_path, capsys):
    big = fake_blob(tmp_path / "big.hark", payload_bytes=120_000)
    result = in_process(capsys, "deploy", "--board", "pyboard", "--build-only", "--model", big,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1 and "KB over" in result.stderr
    forced = in_process(capsys, "deploy", "--board", "pyboard", "--build-only", "--force",
                        "--model", big, "--build-dir", tmp_path / "build")
    assert forced.returncode == 0 and "KB over" in forced.stdout


@pytest.mark.parametrize("name, fits", [
    ("default", ["esp32-inmp441", "esp32s3", "rp2040", "pyboard"]),
    ("esp32", ["esp32-inmp441", "esp32s3", "rp2040"]),
    ("wide", ["esp32s3", "rp2040"]),
])
def test_shipped_models_fit_the_boards_the_readme_names(name, fits, tmp_path, capsys):
    """The README's "Which model for which board": the default fits every board profile; the
    esp32 and wide models only those with the RAM for them, and the others are told to use the
    default."""
    for board in ("esp32-inmp441", "esp32s3", "rp2040", "pyboard"):
        result = in_process(capsys, "deploy", "--board", board, "--build-only",
                            "--model", MODELS_DIR / f"{name}.hark", "--build-dir", tmp_path / board)
        if board in fits:
            assert result.returncode == 0, (board, result.stderr)
        else:
            assert result.returncode == 1 and "KB of RAM" in result.stderr, board
            assert "models/default.hark (width 64) fits every board profile" in result.stderr


def test_build_only_checks_the_profile_labels(tmp_path, capsys):
    other = fake_blob(tmp_path / "other.hark", 100, labels=["_silence_", "_unknown_", "cat"])
    result = in_process(capsys, "deploy", "--board", "esp32s3", "--build-only", "--model", other,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1 and "is not a label of the model" in result.stderr


FAKE_MAIN = """import sys, time
print("hark: listening")
for label, p in (("yes", "0.93"), ("off", "0.81")):
    time.sleep(0.05)
    print("t=1.%02ds %s %s" % (len(label), label, p))
time.sleep(float(open("linger.txt").read()))
sys.exit(0)
"""


def test_monitor_shows_detections(unix_board, capsys):
    """main.py runs under the monitor (its sys.exit must not end the unix port) and detections
    are picked out; --seconds stops watching a main.py that keeps running."""
    port, device_dir = unix_board
    (device_dir / "main.py").write_text(FAKE_MAIN)
    (device_dir / "linger.txt").write_text("0")
    result = in_process(capsys, "monitor", "--board", "unix", "--port", port, "--seconds", 10)
    assert result.returncode == 0, result.stderr
    assert "hark: listening" in result.stdout and "exited with code 0" in result.stdout
    assert ">>> yes" in result.stdout and ">>> off" in result.stdout
    assert "2 detection(s)" in result.stdout

    (device_dir / "linger.txt").write_text("3")
    started = time.monotonic()
    result = in_process(capsys, "monitor", "--board", "unix", "--port", port, "--seconds", 1)
    assert time.monotonic() - started < 2.5, "--seconds did not stop the monitor"
    assert "2 detection(s)" in result.stdout and "exited" not in result.stdout
    # The unix port cannot be interrupted through a raw pseudo-terminal: main.py runs to its end,
    # after which the port answers again.
    (device_dir / "linger.txt").write_text("0")
    again = in_process(capsys, "monitor", "--board", "unix", "--port", port, "--seconds", 10)
    assert "2 detection(s)" in again.stdout, again.stderr


def test_monitor_shows_the_firmware_error_and_fails(unix_board, model, tmp_path, capsys):
    """Deployed to the unix port without the WAV its profile reads: deploy says so, and the
    monitor shows the firmware's own error line (not just an exit code) and exits 1."""
    port, device_dir = unix_board
    deployed = _deploy(port, model, tmp_path / "build")
    assert deployed.returncode == 0
    assert "input.wav" in deployed.stdout and "not on the board" in deployed.stdout
    result = in_process(capsys, "monitor", "--board", "unix", "--port", port, "--seconds", 30)
    assert result.returncode == 1
    assert "input.wav" in result.stdout and "hark: error:" in result.stdout
    assert "exited with code 2" in result.stdout
    assert "stopped with code 2: hark: error:" in result.stderr and "input.wav" in result.stderr


def test_monitor_reports_a_traceback(unix_board, capsys):
    port, device_dir = unix_board
    (device_dir / "main.py").write_text("print('starting')\nraise ValueError('boom')\n")
    result = in_process(capsys, "monitor", "--board", "unix", "--port", port, "--seconds", 10)
    assert result.returncode == 1 and "starting" in result.stdout
    assert "ValueError: boom" in result.stderr


def test_record_reads_the_board_source(unix_board, model, tmp_path, capsys):
    """The unix profile's WAV source, read on the device through the deployed firmware, comes back
    sample for sample."""
    port, device_dir = unix_board
    assert _deploy(port, model, tmp_path / "build").returncode == 0
    rate, n = 16000, 16000 * 3
    samples = bytes((i * 7919) & 0xFF for i in range(2 * n))
    import wave
    with wave.open(str(device_dir / "input.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    out = tmp_path / "rec" / "out.wav"
    result = in_process(capsys, "record", "--board", "unix", "--port", port, "--seconds", 1.5, "--out", out)
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.readframes(w.getnframes()) == samples[:2 * 24000]
    assert not (device_dir / ".hark-rec.pcm").exists()


def test_record_needs_the_firmware(unix_board, tmp_path, capsys):
    port, _ = unix_board
    result = in_process(capsys, "record", "--board", "unix", "--port", port, "--seconds", 1,
                        "--out", tmp_path / "x.wav")
    assert result.returncode == 1 and "hark deploy --board unix` first" in result.stderr


def test_package_json_lists_the_current_firmware():
    from hark.deploy import format_package_json, mip_package
    assert (REPO / "package.json").read_text() == format_package_json(mip_package()), \
        "package.json is out of date: run `hark deploy --write-package-json`"


def test_mip_installs_package_json(unix_board):
    """`mpremote mip install` of this repo's package.json puts every file in place."""
    import json
    if not (REPO / "models" / "default.hark").exists():
        pytest.skip("models/default.hark is not trained yet")
    port, device_dir = unix_board
    mpremote = Path(sys.executable).with_name("mpremote")
    result = subprocess.run([str(mpremote), "connect", str(port), "resume", "mip", "install", "--target", ".",
                             str(REPO / "package.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for device_name, repo_path in json.loads((REPO / "package.json").read_text())["urls"]:
        assert (device_dir / device_name).read_bytes() == (REPO / repo_path).read_bytes()


def test_monitor_attach_listens_without_the_repl(tmp_path, capsys):
    """--attach reads a board that is already running: here the unix port running a script that
    prints detections, behind a pseudo-terminal."""
    script = tmp_path / "running.py"
    script.write_text("import time\nwhile True:\n print('t=0.50s go 0.97')\n time.sleep(0.2)\n")
    micropython = Path(sys.executable).with_name("micropython")
    port = tmp_path / "tty"
    proc = subprocess.Popen(["socat", f"PTY,link={port},raw,echo=0", f"EXEC:{micropython} {script},pty,raw,echo=0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if port.exists():
                break
            time.sleep(0.01)
        result = in_process(capsys, "monitor", "--board", "unix", "--port", port, "--attach", "--seconds", 1.5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert ">>> go" in result.stdout
    assert int(result.stdout.rsplit(" detection(s)", 1)[0].split()[-1]) >= 3


def test_no_port_and_no_board(tmp_path, model, capsys):
    from hark.device import KNOWN_VIDS, serial_ports
    if any(p.vid in KNOWN_VIDS for p in serial_ports()):
        pytest.skip("a MicroPython-like USB device is connected")
    result = in_process(capsys, "deploy", "--board", "unix", "--model", model, "--build-dir", tmp_path)
    assert result.returncode == 1
    assert "no board connected: no MicroPython-like USB serial device found" in result.stderr


def test_force_deploys_past_the_estimate(unix_board, tmp_path, capsys):
    """A profile file with a small RAM budget refuses the model; --force deploys it with a warning."""
    import json
    port, device_dir = unix_board
    board = json.loads((boards.BOARDS_DIR / "unix.json").read_text())
    board.update(name="tiny-unix", ram_budget_bytes=40_000)
    profile = tmp_path / "tiny-unix.json"
    profile.write_text(json.dumps(board))
    model = fake_blob(tmp_path / "m.hark", payload_bytes=30_000)
    args = ["deploy", "--board", profile, "--port", port, "--model", model, "--build-dir", tmp_path / "b"]
    refused = in_process(capsys, *args)
    assert refused.returncode == 1 and "tiny-unix has 39 KB RAM budget" in refused.stderr
    assert "--force deploys anyway" in refused.stderr and list(device_dir.iterdir()) == []
    forced = in_process(capsys, *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "warning: does not fit, deploying anyway" in forced.stdout
    assert (device_dir / "model.hark").read_bytes() == model.read_bytes()
    assert json.loads((device_dir / "config.json").read_text())["name"] == "tiny-unix"


RAMFS = """import os, sys, vfs
class RAMBlockDev:
    def __init__(self, block_size, num_blocks):
        self.block_size = block_size
        self.data = bytearray(block_size * num_blocks)
    def readblocks(self, block_num, buf, offset=0):
        addr = block_num * self.block_size + offset
        buf[:] = self.data[addr:addr + len(buf)]
    def writeblocks(self, block_num, buf, offset=None):
        addr = block_num * self.block_size + (offset or 0)
        self.data[addr:addr + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            return 0
bdev = RAMBlockDev(512, 256)
kind = vfs.VfsFat if sys.argv[1] == "fat" else vfs.VfsLfs2
kind.mkfs(bdev)
vfs.mount(kind(bdev), "/flash")
os.chdir("/flash")
"""


@pytest.fixture(params=["lfs", "fat"])
def flash_fs_board(request, tmp_path):
    """The unix port working in a 128 KB in-RAM LittleFS or FAT filesystem mounted at /flash,
    the filesystems boards use (FAT: pyboard; LittleFS: ESP32, RP2040)."""
    micropython = Path(sys.executable).with_name("micropython")
    (tmp_path / "ramfs.py").write_text(RAMFS)
    port = tmp_path / "ttyFS"
    proc = subprocess.Popen(["socat", f"PTY,link={port},raw,echo=0",
                             f"EXEC:{micropython} -i ramfs.py {request.param},pty,raw,echo=0"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        if port.exists():
            break
        time.sleep(0.01)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _device_files(port):
    from hark.device import Device
    with Device(str(port)) as device:
        device.exec("import os", "importing os")
        return device.sha256(device.eval("sorted(os.listdir())", "listing"))


def test_deploy_on_board_filesystems(flash_fs_board, tmp_path, capsys):
    """Renaming over existing files works on LittleFS and FAT; a model that does not fit in the
    free space is refused with the numbers and leaves the deployed files as they were."""
    port = flash_fs_board
    first = fake_blob(tmp_path / "first.hark", payload_bytes=8_000, seed=1)
    second = fake_blob(tmp_path / "second.hark", payload_bytes=9_000, seed=2)
    for model in (first, second):
        assert _deploy(port, model, tmp_path / "build").returncode == 0
        files = _device_files(port)
        assert files["model.hark"] == _sha(model)
        assert files["config.json"] == _sha(tmp_path / "build" / "unix" / "config.json")
        assert not [n for n in files if n.startswith(TMP_PREFIX)]

    huge = fake_blob(tmp_path / "huge.hark", payload_bytes=120_000, seed=3)
    result = in_process(capsys, "deploy", "--board", "unix", "--port", port, "--model", huge,
                        "--build-dir", tmp_path / "build")
    assert result.returncode == 1
    assert "the board's filesystem is full: the new files need 118 KB free" in result.stderr
    assert _device_files(port) == files


def test_deploy_leaves_the_cohort_out_when_it_does_not_fit(unix_board, model, tmp_path):
    """A board with flash for the model and firmware but not for the enrollment cohort gets no
    model.cohort, and is told that enrolled words' thresholds will not be calibrated."""
    from hark.boards import fits
    from hark.deploy import build, deploy
    if not model.with_suffix(".cohort").exists():
        pytest.skip("no cohort beside the model")
    port, device_dir = unix_board
    board = boards.load("unix")
    built = build(board, build_dir=tmp_path / "b")
    board["flash_budget_bytes"] = fits(board, model, built).flash_needed + 1000
    said = []
    deploy(board, str(port), model, build_dir=tmp_path / "b", say=said.append)
    names = {p.name for p in device_dir.iterdir()}
    assert "model.hark" in names and "model.cohort" not in names
    assert any("does not fit unix's flash budget" in s and "not calibrated" in s for s in said)
