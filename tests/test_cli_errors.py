"""Bad input through the CLI as a user types it: one readable error line, no traceback, and
nothing written on failure (issue 13's hostile-tester repros)."""
import json
import re
import subprocess

import numpy as np
import pytest

from hark import BOARDS_DIR, MODELS_DIR, REPO
from hark.cli import COMMANDS, main
from helpers import write_wav

MODEL = MODELS_DIR / "default.hark"


def hark(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture
def words(tmp_path):
    """A tiny Speech Commands-layout folder of noise clips (no lists)."""
    rng = np.random.default_rng(0)
    for word in ("yes", "no"):
        for i in range(2):
            write_wav(tmp_path / "data" / word / f"s{i}_nohash_0.wav", 0.1 * rng.standard_normal(16000))
    return tmp_path / "data"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_teaches(command, capsys):
    """`hark COMMAND --help` says what the command is for and shows how it is typed, with
    default paths as a user of any checkout reads them (none of this machine's)."""
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert len(out.split("\n\n")[1]) > 40, out          # the description, after the usage
    assert re.search(r"^examples.*:$(\n  .*)*\n  (nice )?(hark|make) ", out, re.M), out
    assert str(REPO) not in out and str(REPO.parent / "shared") not in out


def test_eval_output_folders_are_made_before_the_work(words, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    result = hark(capsys, "eval", "--model", MODEL, "--data", words, "--split", "all",
                  "--json", out / "x.json", "--plot", tmp_path / "plots" / "cm.png")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "x.json").read_text())["n"] > 0
    assert (tmp_path / "plots" / "cm.png").stat().st_size > 0


def test_eval_folder_of_garbage(tmp_path, capsys):
    for word in ("yes", "no"):
        (tmp_path / word).mkdir()
        (tmp_path / word / "a.wav").write_bytes(b"not audio at all" * 50)
    result = hark(capsys, "eval", "--model", MODEL, "--data", tmp_path)
    assert result.returncode == 1
    assert "none of the 2 clips could be read" in result.stderr


def test_eval_unknown_word(words, capsys):
    result = hark(capsys, "eval", "--model", MODEL, "--data", words, "--words", "banana")
    assert result.returncode == 1
    assert "no clips of banana" in result.stderr and "yes" in result.stderr


def test_eval_without_testing_list_says_so(words, capsys):
    result = hark(capsys, "eval", "--model", MODEL, "--data", words, "--engine", "firmware")
    assert result.returncode == 0, result.stderr
    assert "has no testing_list.txt" in result.stderr and "training data" in result.stderr
    assert result.stderr.count("warning:") == 1 and "UserWarning" not in result.stderr
    assert "clips: every clip of" in result.stdout


def test_eval_warns_about_missing_list_entries(words, capsys):
    (words / "testing_list.txt").write_text("yes/s0_nohash_0.wav\nno/gone_nohash_0.wav\n")
    result = hark(capsys, "eval", "--model", MODEL, "--data", words, "--engine", "firmware")
    assert result.returncode == 0, result.stderr
    assert "1 of the 2 entries" in result.stderr and "no/gone_nohash_0.wav" in result.stderr
    assert "the test split of" in result.stdout and "(1 clips, testing_list.txt)" in result.stdout


def _train_json(tmp_path, **spec):
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes((MODELS_DIR / "default.tflite").read_bytes())
    recipe = json.loads((MODELS_DIR / "default.train.json").read_text())
    recipe["config"]["spec"].update(spec)
    tflite.with_suffix(".train.json").write_text(json.dumps(recipe))
    return tflite


@pytest.mark.parametrize("spec, words", [
    ({"n_fft": 1024}, "512-point FFT"),
    ({"n_mfcc": 13}, "49 x 13"),
    ({"sample_rate": 8000}, "8000 Hz"),
])
def test_export_refuses_a_front_end_the_device_cannot_run(tmp_path, capsys, spec, words):
    tflite = _train_json(tmp_path, **spec)
    result = hark(capsys, "export", "--tflite", tflite, "--out", tmp_path / "o.hark")
    assert result.returncode == 1 and words in result.stderr
    assert "nothing was written" in result.stderr and not (tmp_path / "o.hark").exists()


@pytest.mark.parametrize("option, value, words", [
    ("--threshold", "2", "--threshold: 2.0 must be a probability in (0, 1]"),
    ("--threshold", "0", "--threshold: 0.0 must be"),
    ("--average-window-ms", "-5", "--average-window-ms: -5 must be a whole number of ms > 0"),
    ("--command-average-ms", "0", "--command-average-ms: 0 must be a whole number of ms > 0"),
    # the commands' own window needs the wake+command grammar, which this model lacks
    ("--command-average-ms", "900", "set --average-window-ms instead"),
])
def test_export_detector_ranges(tmp_path, capsys, option, value, words):
    tflite = _train_json(tmp_path)
    result = hark(capsys, "export", "--tflite", tflite, "--out", tmp_path / "o.hark", option, value)
    assert result.returncode == 1 and words in result.stderr
    assert not (tmp_path / "o.hark").exists()


def _profile(tmp_path, name, edit):
    board = json.loads((BOARDS_DIR / f"{name}.json").read_text())
    edit(board)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(board))
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda b: b["detector"].update(threshold=5), "detector.threshold: 5 must be a probability"),
    (lambda b: b["detector"].update(average_window_ms=-1), "detector.average_window_ms: -1 must be"),
    (lambda b: b["detector"].update(thresholds={"yes": 1.5}), "detector.thresholds.yes: 1.5"),
    (lambda b: b["detector"].update(command_average_ms=0.5), "detector.command_average_ms: 0.5"),
    (lambda b: b["audio"]["i2s"].update(sck=b["audio"]["i2s"]["sd"]), "audio.i2s.sd: pin"),
    (lambda b: b["actions"]["led"].update(pin=b["audio"]["i2s"]["sd"]),
     "actions.led.pin: pin"),
])
def test_profile_ranges_and_pin_clashes(tmp_path, capsys, edit, words):
    profile = _profile(tmp_path, "esp32-inmp441", edit)
    result = hark(capsys, "deploy", "--board", profile, "--build-only", "--build-dir", tmp_path / "b")
    assert result.returncode == 1 and words in result.stderr, result.stderr


def test_action_pins_may_share_a_gpio():
    from hark import boards
    board = boards.load("esp32-inmp441")
    board["actions"]["pins"] = {"on": 26, "off": {"pin": 26, "active_high": False}}
    assert boards.pin_clashes(board) == []
    board["actions"]["led"]["pin"] = 26
    clashes = boards.pin_clashes(board)
    assert len(clashes) == 2
    assert clashes[0] == "actions.pins.on: pin 26 is already actions.led.pin; give each job its own GPIO"


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], "--epochs 0 must be >= 1"),
    (["--batch-size", "-1"], "--batch-size -1 must be >= 1"),
    (["--mic-prob", "2"], "--mic-prob 2.0 must be between 0 and 1"),
    (["--formant-prob", "1.2"], "--formant-prob 1.2 must be between 0 and 1"),
    (["--dc-prob", "-0.1"], "--dc-prob -0.1 must be between 0 and 1"),
    (["--dc-silence-prob", "1.5"], "--dc-silence-prob 1.5 must be between 0 and 1"),
    (["--average-epochs", "-1"], "--average-epochs -1 must be >= 0"),
    (["--epochs", "5", "--average-epochs", "6"], "than --epochs 5 trains: at most 5"),
    (["--mixup-keep-silence"], "--mixup-keep-silence chooses how --mixup mixes: add --mixup"),
    (["--mixup-epochs", "30"], "--mixup-epochs chooses how --mixup mixes: add --mixup"),
    (["--mixup", "0.3", "--epochs", "5", "--mixup-epochs", "6"],
     "--mixup-epochs 6 is more than --epochs 5 trains: at most 5"),
    (["--label-real-share", "_unknown_=1.5"],
     "--label-real-share _unknown_=1.5 must be between 0 and 1"),
    (["--label-real-share", "on"], "--label-real-share 'on': give a label and a number"),
    (["--real-share", "-0.1"], "--real-share -0.1 must be between 0 and 1"),
    (["--synth-ratio", "2"], "--synth-ratio 2.0 must be between 0 and 1"),
    (["--drop-engines", "mbrola,kokro"], "--drop-engines kokro: not an engine of `hark synth`"),
    (["--drop-engines", "mbrola"], "--drop-engines leaves out clips of --synth folders"),
])
def test_train_options_are_checked_first(tmp_path, capsys, words, args):
    out = tmp_path / "run"
    result = hark(capsys, "train", "--data", tmp_path, "--out", out, *args)
    assert result.returncode == 1 and words in result.stderr
    assert not out.exists()


def test_train_missing_data_folder_fails_fast(tmp_path):
    """Checked before TensorFlow starts (~10 s) and before --out is made."""
    import sys
    import time
    from pathlib import Path
    out = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).with_name("hark")), "train", "--data",
                             str(tmp_path / "nonexistent"), "--out", str(out)],
                            capture_output=True, text=True)
    assert time.monotonic() - started < 5
    assert result.returncode == 1 and "no such folder" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.fixture
def damaged(tmp_path):
    """Unreadable clips and noise, one clip at 8 kHz stereo, one good clip."""
    root = tmp_path / "damaged"
    for word in ("yes", "no"):
        for i in range(3):
            (root / word).mkdir(parents=True, exist_ok=True)
            (root / word / f"bad{i}.wav").write_bytes(b"RIFF garbage" * 20)
    (root / "_background_noise_").mkdir()
    (root / "_background_noise_" / "hum.wav").write_bytes(b"RIFF garbage" * 20)
    write_wav(root / "yes" / "good.wav", np.zeros(16000))
    write_wav(root / "no" / "rate.wav", np.zeros((8000, 2)), sr=8000)
    return root


def test_data_info_counts_unreadable_and_converted(damaged, capsys):
    result = hark(capsys, "data", "info", damaged)
    assert result.returncode == 0, result.stderr
    assert "2 readable clips" in result.stdout and "0 background-noise files" in result.stdout
    assert "unreadable: 6 clip(s)" in result.stdout
    assert "unreadable: 1 background-noise file(s)" in result.stdout
    assert "not 16 kHz mono: 1 clip(s)" in result.stdout and "rate.wav" in result.stdout
    assert "all                    2" in result.stdout


def test_tensorflow_start_up_log_is_silenced(damaged, tmp_path):
    """`hark train` imports TensorFlow (its C++ start-up log: oneDNN, CPU features, absl) and
    then fails on the data: the user sees hark's line only."""
    import sys
    from pathlib import Path
    result = subprocess.run([str(Path(sys.executable).with_name("hark")), "train", "--data",
                             str(damaged), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "hark train: error:" in result.stderr
    for noise in ("absl", "oneDNN", "cpu_feature_guard", "I0000"):
        assert noise not in result.stderr, result.stderr


def test_train_names_unreadable_clips_and_noise(damaged, tmp_path, capsys):
    for good in ("yes/good.wav", "no/rate.wav"):
        (damaged / good).unlink()
    out = tmp_path / "run"
    result = hark(capsys, "train", "--data", damaged, "--out", out, "--epochs", "1")
    assert result.returncode == 1
    assert "none of the 6 training clips could be read" in result.stderr
    assert "none of the 1 files in" in result.stdout and "_background_noise_ could be read" in result.stdout
    assert "every clip is in validation_list" not in result.stderr
    assert not out.exists()


def _zero_length_wav(path, samples=b"\x01\x00" * 8000):
    """What a recorder that crashed leaves: a data chunk whose length was never written."""
    import struct
    from helpers import fmt, riff
    data = riff([(b"fmt ", fmt())])
    data += b"data" + struct.pack("<I", 0) + samples
    path.write_bytes(data)
    return path


def test_simulate_wav_with_zero_data_length(tmp_path, capsys):
    wav = _zero_length_wav(tmp_path / "crashed.wav")
    result = hark(capsys, "simulate", wav)
    assert result.returncode == 1
    assert "data chunk's length is 0 but 16000 bytes follow" in result.stderr
    assert "sox --ignore-length" in result.stderr


def test_simulate_wav_without_samples(tmp_path, capsys):
    from helpers import fmt, riff
    wav = tmp_path / "empty.wav"
    wav.write_bytes(riff([(b"fmt ", fmt()), (b"data", b"")]))
    result = hark(capsys, "simulate", wav)
    assert result.returncode == 1 and "the WAV has no samples" in result.stderr


def test_simulate_folder_and_bad_heapsize(tmp_path, capsys):
    result = hark(capsys, "simulate", tmp_path)
    assert result.returncode == 1 and "is a folder; pass the WAV files in it" in result.stderr
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", str(tmp_path / "x.wav"), "--heapsize", "lots"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "'lots' is not a heap size" in err and "Invalid command line" not in err


def test_read_position_of_a_process():
    import os
    from hark.unixport import read_position
    with open(MODEL, "rb", buffering=0) as f:
        f.read(100)
        assert read_position(os.getpid(), MODEL) == 100


def test_simulate_shows_progress_on_a_long_file(tmp_path, capsys):
    """Ten minutes of audio: the bar follows the firmware's read position in the WAV. (The
    streaming firmware reads a minute in ~0.2 s, one poll of the bar: too short to be sure
    to see it move.)"""
    import re
    from hark import boards
    from hark.unixport import run_firmware
    wav = tmp_path / "long.wav"
    write_wav(wav, 0.05 * np.random.default_rng(1).standard_normal(16000 * 600))
    run_firmware(MODEL, boards.load("unix"), wav=wav, progress=True)
    err = capsys.readouterr().err
    shown = [int(p) for p in re.findall(r"long\.wav:\s+(\d+)%", err)]
    assert shown and max(shown) > 0, err


def test_ctrl_c_stops_the_firmware_at_once():
    """Ctrl-C during a firmware run (eval's firmware phase, simulate) kills the unix port
    instead of waiting for it to finish. Run in its own Python: under pytest-xdist the test
    may not be on the main thread, the only one a Ctrl-C reaches, and a suite started in the
    background inherits SIGINT ignored, so the child takes Python's Ctrl-C handler back."""
    import signal
    import sys
    import time
    code = ("import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from hark.unixport import micropython_binary, run_watched\n"
            "print('running', flush=True)\n"
            "run_watched([micropython_binary(), '-c', 'import time\\ntime.sleep(30)'], env=None)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 5
    assert "KeyboardInterrupt" in err
