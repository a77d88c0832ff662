"""On-device enrollment (issue 16): the embedding every blob marks, the enrolled-word store and
matcher in the firmware, detection through the same detector, grammar and actions, and the
host commands (`hark simulate --enroll`, `hark enroll`)."""
from pathlib import Path

import numpy as np
import pytest

from hark.training import embedding
from hark.training.blob import read_blob

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"

EMBED = """
import sys, blob, engine, streaming
b = blob.load(sys.argv[1])
it = (streaming.StreamingInterpreter(b) if sys.argv[4] == 's' else engine.Interpreter(b))
src = open(sys.argv[2], 'rb')
dst = open(sys.argv[3], 'wb')
buf = bytearray(it.width if sys.argv[4] == 's' else len(it.input))
first = True
while src.readinto(buf) == len(buf):
    if sys.argv[4] == 's':
        if first:
            it.fill(buf)
            first = False
        else:
            it.push(buf)
    else:
        it.input[:] = buf
        it.invoke()
    dst.write(it.embedding)
dst.close()
print(len(it.embedding))
"""


def _firmware_embeddings(mpy, blob_path, x, mode, tmp_path):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    np.ascontiguousarray(x, np.int8).tofile(src)
    r = mpy(EMBED, blob_path, src, dst, mode)
    assert r.returncode == 0, r.stderr
    size = int(r.stdout.split()[-1])
    return (np.fromfile(dst, np.uint8) ^ 0x80).astype(np.int8).reshape(-1, size)   # offset form


@pytest.mark.parametrize("name", ["default", "dscnn"])
def test_windowed_embedding_matches_tflite_micro_cut_at_that_layer(name, mpy, tmp_path):
    tflite = (MODELS / f"{name}.tflite").read_bytes()
    meta = read_blob(MODELS / f"{name}.hark")[0]["model"]
    assert meta["embedding"]["size"] == 64
    rng = np.random.default_rng(1)
    shape = tuple(meta["input"]["shape"][1:])
    x = np.clip(rng.normal(meta["input"]["zero_point"], rng.uniform(5, 60, (96, 1, 1)),
                           (96,) + shape), -128, 127).astype(np.int8)
    ref = embedding.embed(embedding.cut_tflite(tflite), x)
    got = _firmware_embeddings(mpy, MODELS / f"{name}.hark", x, "w", tmp_path)
    assert ref.shape == got.shape == (96, 64)
    assert len(np.unique(ref, axis=0)) > 90        # not a constant: the test can fail
    np.testing.assert_array_equal(got, ref)


def test_streaming_embedding_matches_tflite_micro_at_every_hop(mpy, tmp_path):
    """The streaming engine's embedding after each push equals TFLite Micro's on the window
    ending at that hop (the runtime streams the tcn family)."""
    tflite = (MODELS / "default.tflite").read_bytes()
    meta = read_blob(MODELS / "default.hark")[0]["model"]
    n, width = meta["input"]["shape"][1:3]
    rng = np.random.default_rng(2)
    frames = np.clip(rng.normal(0, 40, (150, width)), -128, 127).astype(np.int8)
    pad = np.concatenate([np.repeat(frames[:1], n - 1, axis=0), frames])
    windows = np.stack([pad[k:k + n] for k in range(len(frames))])
    ref = embedding.embed(embedding.cut_tflite(tflite), windows)
    got = _firmware_embeddings(mpy, MODELS / "default.hark", frames, "s", tmp_path)
    np.testing.assert_array_equal(got, ref)


# --- enrollment in the firmware (unix port) ---------------------------------------------------

import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402

import soundfile as sf  # noqa: E402

from hark import boards  # noqa: E402
from hark.cli import HarkError, main  # noqa: E402
from hark.unixport import (ENROLL_AMBIENT_S, ENROLL_SLOT_S, enrollment_audio, run_enroll,  # noqa: E402
                           run_firmware)
from test_deploy import _deploy, unix_board  # noqa: E402,F401  (unix_board: the socat fixture)

SAMPLES = REPO / "samples"
RATE = 16000


SPEAKER = "918a2473"     # one speaker's five "right"s: enrolled as a new word, "bright"


@pytest.fixture(scope="module")
def one_voice(tmp_path_factory):
    """One speaker's clips of one word as WAV files (the device matches the voice that enrolled:
    docs/enroll.md): 4 to enroll, the 5th held out; then the same speaker's other words."""
    from conftest import SHARED_DATA
    clips = sorted((SHARED_DATA / "right").glob(f"{SPEAKER}_nohash_*.flac"))
    others = sorted(c for c in SHARED_DATA.glob(f"*/{SPEAKER}_nohash_*.flac")
                    if c.parent.name != "right")
    if len(clips) < 5 or len(others) < 10:
        pytest.skip(f"shared Speech Commands data with speaker {SPEAKER}'s clips not found at "
                    f"{SHARED_DATA}")
    out = tmp_path_factory.mktemp("voice")
    wavs = []
    for i, c in enumerate(clips + others):
        x = sf.read(str(c), dtype="int16")[0]
        folder = out / ("enroll" if i < 4 else "held_out" if i == 4 else "other")
        folder.mkdir(exist_ok=True)
        wavs.append(folder / f"{c.parent.name}_{c.stem}.wav")
        sf.write(str(wavs[-1]), x, RATE, subtype="PCM_16")
    return wavs[:4], wavs[4:5], wavs[5:]


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _heard(path, enrolled, board="unix", model=MODELS / "default.hark", **kw):
    return [d.label for d in run_firmware(model, boards.load(board) if isinstance(board, str)
                                          else board, wav=path, pad_ms=1000, enrolled=enrolled,
                                          **kw).detections]


def _wav(tmp_path, name, *parts):
    """The WAV files end to end, each followed by 0.6 s of silence."""
    x = []
    for p in parts:
        x += [sf.read(str(p), dtype="int16")[0], np.zeros(int(0.6 * RATE), np.int16)]
    path = tmp_path / name
    sf.write(str(path), np.concatenate(x), RATE, subtype="PCM_16")
    return path


def test_enrolled_word_is_detected_after_a_restart_beside_the_model_words(one_voice, tmp_path):
    """One speaker's 4 "right"s enrolled as "bright": heard on their 5th (held out) and not on
    their other words; the model's words (its own "right" too) are heard as before."""
    enroll_clips, held_out, others = one_voice
    enrolled = tmp_path / "enrolled.bin"
    out = run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips, "bright", enrolled)
    assert out.count("say 'bright' now") == 4 and "saved 'bright' (4 examples" in out
    # every run below is a fresh unix-port process: the words come back from the file
    assert all("bright" in _heard(c, enrolled) for c in enroll_clips + held_out)
    assert [c.name for c in others if "bright" in _heard(c, enrolled)] == []
    assert _heard(SAMPLES / "_silence___running_tap.wav", enrolled) == []
    assert _heard(SAMPLES / "down__0ab3b47d_nohash_1.wav", enrolled) == ["down"]
    assert "bright" not in _heard(held_out[0], None)    # without the file: the model alone


def test_failed_enrollment_leaves_the_previous_set_intact(one_voice, tmp_path):
    enroll_clips, _, _ = one_voice
    enrolled = tmp_path / "enrolled.bin"
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips[:3], "bright", enrolled)
    before = _sha(enrolled)
    short = tmp_path / "short.wav"      # the room and 2 examples, then the audio ends
    sf.write(str(short), enrollment_audio(enroll_clips[:2]), RATE, subtype="PCM_16")
    with pytest.raises(HarkError, match="audio ended after 2 of 5 examples of 'sheila'; nothing was saved"):
        run_firmware(MODELS / "default.hark", boards.load("unix"), wav=short, enrolled=enrolled,
                     extra=["--enroll", "sheila", "--examples", "5"])
    assert _sha(enrolled) == before and not Path(str(enrolled) + ".tmp").exists()
    with pytest.raises(HarkError, match="'yes' is a label of the model already"):
        run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips[:2], "yes", enrolled)
    assert _sha(enrolled) == before


def _mp_main(args, cwd):
    from hark import FIRMWARE_DIR
    from hark.unixport import micropython_binary
    env = {"MICROPYPATH": str(FIRMWARE_DIR), "PATH": "/usr/bin:/bin"}
    return subprocess.run([micropython_binary(), str(FIRMWARE_DIR / "main.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_damaged_or_foreign_words_are_ignored_with_a_warning(one_voice, tmp_path):
    enroll_clips, _, _ = one_voice
    enrolled = tmp_path / "enrolled.bin"
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips[:3], "bright", enrolled)
    board = REPO / "boards" / "unix.json"
    r = _mp_main(["--model", MODELS / "dscnn.hark", "--board", board, "--enrolled", enrolled,
                  "--wav", SAMPLES / "down__0ab3b47d_nohash_1.wav", "--no-stream"], tmp_path)
    assert r.returncode == 0 and "recorded with another model" in r.stderr
    data = bytearray(enrolled.read_bytes())
    data[-1] ^= 0x40
    enrolled.write_bytes(bytes(data))
    r = _mp_main(["--model", MODELS / "default.hark", "--board", board, "--enrolled", enrolled,
                  "--wav", SAMPLES / "down__0ab3b47d_nohash_1.wav", "--pad-ms", 1000], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "enrolled words ignored" in r.stderr and "checksum mismatch" in r.stderr
    assert " down " in r.stdout       # the model's words are still heard
    damaged = enrolled.read_bytes()
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips[:2], "sheila", enrolled)
    assert Path(str(enrolled) + ".bad").read_bytes() == damaged   # set aside, not lost
    r = _mp_main(["--enrolled", enrolled, "--list"], tmp_path)
    assert "enrolled sheila examples=2" in r.stdout and "1 words" in r.stdout


def test_words_enrolled_by_the_pooled_embedding_firmware_ask_to_enroll_again(one_voice, tmp_path):
    """A version-1 file (one pooled embedding per example, firmware before DTW): listening says
    what to do and hears the model's words; the next enrollment keeps it as .bad, not lost."""
    enroll_clips, _, _ = one_voice
    old = tmp_path / "enrolled.bin"     # version 1's layout: 1 word, 2 examples of 64 bytes
    body = bytes([1, 6]) + b"marvin" + bytes([40, 0, 2]) + bytes(range(128))
    old.write_bytes(b"HKEW" + bytes([1, 0, 64, 0]) + bytes(4) + bytes(4) + body)
    board = REPO / "boards" / "unix.json"
    r = _mp_main(["--model", MODELS / "default.hark", "--board", board, "--enrolled", old,
                  "--wav", SAMPLES / "down__0ab3b47d_nohash_1.wav", "--pad-ms", 1000], tmp_path)
    assert r.returncode == 0 and " down " in r.stdout
    assert ("has version 1, this firmware reads 2 (words recorded by an older firmware); enroll "
            "the words again (`hark enroll`)") in r.stderr
    before = old.read_bytes()
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips[:2], "bright", old)
    assert Path(str(old) + ".bad").read_bytes() == before
    assert "bright" in _heard(enroll_clips[0], old)


def test_list_and_delete(one_voice, tmp_path):
    enroll_clips, _, _ = one_voice
    enrolled = tmp_path / "enrolled.bin"
    model, board = MODELS / "default.hark", boards.load("unix")
    run_enroll(model, board, enroll_clips[:3], "bright", enrolled)
    run_enroll(model, board, enroll_clips[1:4], "sheila", enrolled)
    r = _mp_main(["--enrolled", enrolled, "--list"], tmp_path)
    assert "enrolled bright examples=3" in r.stdout and "enrolled sheila examples=3" in r.stdout
    assert "2 words, %d bytes" % enrolled.stat().st_size in r.stdout
    r = _mp_main(["--enrolled", enrolled, "--delete", "bob"], tmp_path)
    assert r.returncode == 2 and "'bob' is not enrolled; enrolled: bright, sheila" in r.stderr
    r = _mp_main(["--enrolled", enrolled, "--delete", "bright"], tmp_path)
    assert r.returncode == 0 and "deleted 'bright'; 1 words enrolled" in r.stdout
    r = _mp_main(["--enrolled", enrolled, "--list"], tmp_path)
    assert "bright" not in r.stdout and "enrolled sheila" in r.stdout


def test_listening_with_enrolled_words_allocates_nothing(one_voice, tmp_path):
    enroll_clips, held_out, others = one_voice
    enrolled = tmp_path / "enrolled.bin"
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips, "bright", enrolled)
    stream = _wav(tmp_path, "s.wav", *enroll_clips, *held_out, *sorted(SAMPLES.glob("*.wav"))[:8])
    run = run_firmware(MODELS / "default.hark", boards.load("unix"), wav=stream, enrolled=enrolled,
                       heapcheck=True, stats=True)
    assert [d.label for d in run.detections].count("bright") >= 5
    assert run.stats["blocks_checked"] > 500 and run.stats["alloc_bytes"] == 0, run.stats


def test_enrolled_word_as_command_after_the_wake_word_and_as_the_wake_word(one_voice, tmp_path):
    enroll_clips, _, _ = one_voice
    enrolled = tmp_path / "enrolled.bin"
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips, "bright", enrolled)
    yes = SAMPLES / "yes__0ab3b47d_nohash_0.wav"
    board = boards.load("unix")
    board["grammar"] = {"mode": "wake+command", "wake_word": "yes", "command_window_ms": 3000}
    assert _heard(_wav(tmp_path, "a.wav", enroll_clips[1]), enrolled, board) == []
    assert _heard(_wav(tmp_path, "b.wav", yes, enroll_clips[1]), enrolled, board) == ["yes", "bright"]
    board["grammar"] = {"mode": "wake", "wake_word": "bright"}
    assert _heard(_wav(tmp_path, "c.wav", yes, enroll_clips[1]), enrolled, board) == ["bright"]


def test_enrolling_the_word_the_profile_names_as_wake_word(one_voice, tmp_path):
    """A profile (deployed with enroll.words) whose wake word and pin name a word not enrolled yet:
    enrollment ignores the grammar and pins, then listening uses them."""
    enroll_clips, _, _ = one_voice
    enrolled = tmp_path / "enrolled.bin"
    board = boards.load("unix")
    board["grammar"] = {"mode": "wake+command", "wake_word": "bright", "command_window_ms": 3000}
    board["enroll"] = {"words": ["bright"]}
    out = run_enroll(MODELS / "default.hark", board, enroll_clips, "bright", enrolled)
    assert "saved 'bright'" in out
    yes = SAMPLES / "yes__0ab3b47d_nohash_0.wav"
    # the wake word opens the window for one command: the model's own "right" in the same clip
    assert _heard(_wav(tmp_path, "a.wav", enroll_clips[1], yes), enrolled, board) == ["bright", "right"]


DISTANCES = """
import sys, struct, enrolled, match, dtw
from array import array
_, width, words = enrolled.read(sys.argv[1])
m = match.Matcher(words, None, 0, width)
frame = bytearray(width)
head = bytearray(4)
with open(sys.argv[2], 'rb') as src:
    while src.readinto(head) == 4:
        best = [dtw.INF] * m.n
        match._fill(m.state, len(m.state) // 2, dtw.INF)
        for _ in range(struct.unpack('<I', head)[0]):
            src.readinto(frame)
            match._offset(frame, m.frame, width)
            dtw.update(m.frame, m.templates, m.lengths, m.n, width, m.state, m._phase, m.cost)
            m._phase = m._phase + 1 if m._phase < 2 else 0
            best = [min(b, m.cost[i]) for i, b in enumerate(best)]
        print(*best)
print(*[w[1] for w in words])
"""


def test_device_enrollment_and_distances_equal_the_benchmark_on_real_clips(one_voice, mpy,
                                                                           tmp_path):
    """What the unix port enrolls from one speaker's clips (enroll.py: the slots' frames, trimmed)
    are training/enroll_dtw.py's templates of those clips, byte for byte; its matcher's DTW
    costs over real clips (enrolled.py's reader, match.py's frame form, dtw.py) are the
    benchmark's sdtw_cost, exactly; so a clip is detected iff the benchmark's distance is within
    the threshold. (Bit-exact for clips of 1 s whose word is >= 3 hops from their edges: the
    benchmark's streams start at the clip.)"""
    from hark.training import enroll_dtw as ed
    from hark.training.enroll_eval import clip_stream
    enroll_clips, held_out, others = one_voice
    enrolled = tmp_path / "enrolled.bin"
    run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips, "bright", enrolled)
    meta, arrays = read_blob(MODELS / "default.hark")
    streams = [clip_stream(p, meta, arrays) for p in enroll_clips + held_out + others]
    hops = [s[1:].view(np.uint8) ^ 0x80 for s in streams]  # offset form, after the warm-up frame
    trims = [ed.speech(h[:, 0], int(h[-1, 0])) for h in hops[:4]]
    want = b"".join(hops[i][lo:hi].tobytes() for i, (lo, hi) in enumerate(trims))
    data = enrolled.read_bytes()
    assert data.endswith(want) and bytes([hi - lo for lo, hi in trims]) + want in data
    with open(tmp_path / "streams.bin", "wb") as f:
        for s in streams:
            f.write(np.uint32(len(s) - 1).tobytes() + s[1:].tobytes())
    r = mpy(DISTANCES, enrolled, tmp_path / "streams.bin")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    got = np.array([[int(v) for v in ln.split()] for ln in lines[:len(streams)]])
    frames = np.concatenate(hops).astype(np.int32)
    ends = np.cumsum([len(h) for h in hops])
    tmpl = np.concatenate([hops[i][lo:hi] for i, (lo, hi) in enumerate(trims)]).astype(np.int32)
    t_ends = np.cumsum([hi - lo for lo, hi in trims])
    t_starts = np.r_[0, t_ends[:-1]]
    cost = ed.sdtw_cost(frames, ends - [len(h) for h in hops], ends, tmpl, t_starts, t_ends)
    np.testing.assert_array_equal(got, np.minimum(cost, 0x7FFF))     # dtw.py saturates
    thr = int(lines[len(streams)])
    # the threshold calibrated at enrollment: the benchmark's calibrate() over the shipped cohort
    cohort = ed.read_cohort(MODELS / "default.cohort")
    assert ed.calibrate([hops[i][lo:hi] for i, (lo, hi) in enumerate(trims)], cohort) == \
        ([0, 1, 2, 3], thr)
    detected = (cost / (t_ends - t_starts)).min(1) <= thr
    assert detected[:5].all() and not detected[5:].any()     # as the firmware heard them


def test_host_enrollment_slots_match_the_firmware():
    text = (REPO / "firmware" / "enroll.py").read_text()
    assert f"SLOT_MS = {int(ENROLL_SLOT_S * 1000)}\n" in text
    assert f"AMBIENT_MS = {int(ENROLL_AMBIENT_S * 1000)}\n" in text


def test_device_trim_equals_the_benchmark_speech_rule(mpy, tmp_path):
    """enroll.trim (the board's slots) against training/enroll_dtw.py speech() (the benchmark's
    clips) on c0 sequences with digital silence around and inside, short bursts (the MIN_HOPS
    fallback) and words at the edges."""
    from hark.training import enroll_dtw as ed
    rng = np.random.default_rng(11)
    cases = []
    for n in range(60):
        c0 = rng.integers(110, 130, 100)
        at, length = int(rng.integers(0, 95)), int(rng.integers(2, 40))
        c0[at:at + length] += rng.integers(5, 40)
        if n % 3 == 0:
            c0[:int(rng.integers(1, 40))] = 101         # digital silence before
        if n % 4 == 0:
            c0[int(rng.integers(60, 100)):] = 101       # and after
        if n % 5 == 0:
            c0[rng.integers(0, 100, 5)] = 101           # a few inside
        cases.append(c0)
    cases.append(np.full(100, 101))                     # nothing but silence
    (tmp_path / "c0.bin").write_bytes(np.array(cases, np.uint8).tobytes())
    r = mpy("import sys, enroll\nd = open(sys.argv[1], 'rb').read()\n"
            "for i in range(len(d) // 100):\n"
            " print(*enroll.trim(list(d[100 * i:100 * i + 100]), 101))\n", tmp_path / "c0.bin")
    assert r.returncode == 0, r.stderr
    got = [tuple(int(v) for v in ln.split()) for ln in r.stdout.split("\n") if ln]
    assert got == [ed.speech(c, 101) for c in cases]
    assert len({hi - lo for lo, hi in got}) > 10      # the cases trim to many lengths
    text = (REPO / "firmware" / "enroll.py").read_text()
    assert f"MIN_HOPS = {ed.MIN_HOPS} " in text and f"EDGE_HOPS = {ed.EDGE_HOPS} " in text


def test_simulate_enroll_command(one_voice, capsys):
    """`hark simulate --enroll DIR --word NAME`: enrolled from one speaker's 4 clips, it hears
    their held-out 5th and none of their other words (the model's words as before)."""
    enroll_clips, held_out, others = one_voice
    code = main(["simulate", "--enroll", str(enroll_clips[0].parent), "--word", "bright",
                 *map(str, held_out + others), str(SAMPLES / "down__0ab3b47d_nohash_1.wav")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "enroll: saved 'bright' (4 examples" in out
    clip, heard = None, []
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            clip = line[:-1]
        elif ">>> bright" in line:
            heard.append(clip)
    assert heard == [str(held_out[0])], out
    assert ">>> down" in out
    assert main(["simulate", "--word", "bright", str(enroll_clips[0])]) == 1
    assert "give --enroll too" in capsys.readouterr().err


def test_hark_enroll_over_the_serial_repl(one_voice, unix_board, tmp_path, capsys):
    """`hark enroll` against the unix port behind socat (a board as mpremote sees it), the
    firmware deployed by `hark deploy`; the board's microphone is its profile's WAV."""
    enroll_clips, _, _ = one_voice
    port, device_dir = unix_board
    assert _deploy(port, MODELS / "default.hark", tmp_path / "build").returncode == 0
    sf.write(str(device_dir / "input.wav"), enrollment_audio(enroll_clips[:3]), RATE,
             subtype="PCM_16")
    args = ["enroll", "--board", "unix", "--port", str(port)]
    assert main(args + ["--word", "bright", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "say 'bright' now (3/3)" in out and "saved 'bright' (3 examples" in out
    assert (device_dir / "model.cohort").exists() and "set by the number" not in out   # calibrated
    assert (device_dir / "enrolled.bin").exists()
    assert main(args + ["--list"]) == 0
    assert "enrolled bright examples=3" in capsys.readouterr().out
    assert main(args + ["--delete", "bob"]) == 1
    assert "'bob' is not enrolled" in capsys.readouterr().err
    assert main(args + ["--delete", "bright"]) == 0
    assert "deleted 'bright'" in capsys.readouterr().out


def test_enrollment_on_a_cortex_m4f_equals_the_unix_port(one_voice, tmp_path):
    """Enroll mode in 32-bit MicroPython (QEMU, the pyboard's core) computes the threshold the
    64-bit unix port does (calibrated with the model's cohort); a file enrolled on one port is
    heard on the other, within the pyboard's heap, with the same detections."""
    from hark import qemu
    if qemu.missing():
        pytest.skip(f"QEMU: {qemu.missing()}")
    enroll_clips, _, _ = one_voice
    enrolled = tmp_path / "enrolled.bin"
    unix = run_enroll(MODELS / "default.hark", boards.load("unix"), enroll_clips[:3], "bright", enrolled)
    sf.write(str(tmp_path / "enroll.wav"), enrollment_audio(enroll_clips[:3]), RATE, subtype="PCM_16")
    files = {"enroll.wav": tmp_path / "enroll.wav", "enrolled.bin": enrolled,
             "model.cohort": MODELS / "default.cohort"}     # as `hark deploy` copies it
    with qemu.Image(MODELS / "default.hark", boards.load("pyboard"), enroll_clips[0], files=files) as im:
        made = im.run(256 * 1024, wav="enroll.wav", more=["--enroll", "bright", "--examples", "3",
                                                          "--enrolled", "new.bin"])
        heard = im.run(96 * 1024, more=["--enrolled", "enrolled.bin"])
    saved = [ln for ln in made.out.splitlines() if ln.startswith("enroll: saved")]
    assert made.ok and saved == [ln for ln in unix.splitlines() if ln.startswith("enroll: saved")]
    assert "threshold" in saved[0] and "set by the number" not in saved[0]      # calibrated
    assert heard.ok, heard.out[-600:]
    # the enrolled word is heard, and the model's own words (a "right" in "bright", say) as on
    # the 64-bit port: the same file gives the same detections on both
    assert "bright" in [d.split()[1] for d in heard.detections], heard.out[-600:]
    same = run_firmware(MODELS / "default.hark", boards.load("pyboard"), wav=enroll_clips[0],
                        pad_ms=1000, heapsize=256 * 1024, enrolled=enrolled)
    assert heard.detections == [str(d) for d in same.detections]


def test_benchmark_bank_draws_and_distances(tmp_path):
    """training/enroll_eval.py: per-clip best distance equals brute force; cross-speaker draws
    enroll k different speakers and test only others; same-speaker draws test that speaker's
    other clips; a clip the board would refuse (no louder than silence) is never enrolled."""
    from types import SimpleNamespace

    from hark.training import enroll_eval as ee
    rng = np.random.default_rng(5)
    clips, hops = [], []
    for i in range(12):
        spk = f"s{i % 4}"
        path = tmp_path / f"w{i}" / f"{spk}_nohash_{i}.wav"
        path.parent.mkdir()
        sf.write(str(path), np.zeros(16000, np.int16), RATE, subtype="PCM_16")
        clips.append(SimpleNamespace(path=path, word="w" if i < 8 else "x"))
        h = rng.integers(0, 256, (int(rng.integers(5, 9)), 64)).astype(np.uint8)
        h[0] = 1                        # the stream's first hop: silence
        if i == 3:
            h[1:] = 1                   # a clip with nothing in it
        hops.append(h)
    bank = ee.Bank(clips, hops)
    assert not bank.heard[3] and bank.heard[[0, 1, 2, 4]].all()
    t = rng.integers(0, 256, (3, 64)).astype(np.uint8)
    want = [int(np.abs(h.astype(int)[:, None] - t.astype(int)[None]).sum(-1).min()) for h in hops]
    assert bank.best(t).tolist() == want
    for enroll, same, other in ee.draws(bank, "w", 2, 10, rng, same_speaker=False):
        assert 3 not in enroll and len(set(bank.speaker[enroll])) == 2 and len(same) == 0
        assert not set(bank.speaker[other]) & set(bank.speaker[enroll])
        assert set(bank.word[other]) == {"w"}
    for enroll, same, other in ee.draws(bank, "w", 1, 10, rng, same_speaker=True):
        assert 3 not in enroll and len(set(bank.speaker[np.r_[enroll, same]])) == 1
        assert not set(bank.speaker[other]) & set(bank.speaker[enroll])


def test_benchmark_compare_puts_models_side_by_side(tmp_path):
    """enroll_eval --compare: a column per model, its 12-class accuracy from the run beside the
    blob, the firmware's factor and the picked one per protocol; a missing folder is one line."""
    from hark.training import enroll_eval as ee

    def stat(v):
        return [v, 0.1, 20]

    for name, recall, acc in (("a", 0.5, 0.9), ("b", 0.25, None)):
        run = tmp_path / name
        run.mkdir()
        if acc:
            (run / "metrics.json").write_text(json.dumps({"float_test": {"accuracy": acc}}))
        table = [{"k": 3, "factor": f, "draws": 20, "recall_same": stat(None),
                  "recall_other": stat(recall * f / 10), "fa_per_hour": [f * 10.0, 1.0, 20],
                  "fa_per_hour_median": f * 5.0} for f in (2, 10)]
        result = {"model": str(run / "model.hark"), "per_clip_recall_at_1pct": {"mean": recall},
                  "protocols": {"novel": {"picked": {"3": 2}, "table": table}}}
        (tmp_path / f"out_{name}").mkdir()
        (tmp_path / f"out_{name}" / "enroll_eval.json").write_text(json.dumps(result))
    lines = ee.compare([tmp_path / "out_a", tmp_path / "out_b"]).splitlines()
    assert lines[0] == "| | out_a | out_b |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[2:]}
    assert rows["12-class accuracy, dev test"] == ["90.0 %", "- |"]
    assert rows["matcher"] == ["pooled L1", "pooled L1 |"]
    assert rows["novel, 3 examples: recall at 10/16 (FA/h mean, median)"][0] == "50.0 ± 10.0 (100, 50)"
    assert rows["novel, 3 examples: recall at <= 1 FA/h (factor, FA/h)"][1] == "5.0 ± 10.0 (2/16, 20.0) |"
    assert rows["per-clip protocol, 5 examples, 1 % FA"] == ["50.0 %", "25.0 % |"]
    with pytest.raises(SystemExit, match="no enroll_eval.json"):
        ee.compare([tmp_path / "a"])


def test_benchmark_protocols_follow_the_models_labels():
    """Plentiful words the model has a class for are the same-speaker upper bound; those it was
    trained without (--unseen-words) get a protocol of their own; the novel words need 6 clips."""
    from types import SimpleNamespace

    from hark.training import enroll_eval as ee
    from hark.training.dataset import LABELS
    words = ["marvin"] * 6 + ["cat"] * 5 + ["left"] * 101 + ["go"] * 101 + ["yes"] * 101
    bank = SimpleNamespace(word=np.array(words))
    full = ee.protocols_for(bank, set(LABELS))
    assert full["novel"][1] == ["marvin"] and full["same_speaker"][1] == ["yes", "left", "go"]
    assert "same_speaker_unseen" not in full
    ablated = ee.protocols_for(bank, set(LABELS) - {"left", "go"})
    assert ablated["same_speaker"][1] == ["yes"] and ablated["same_speaker_unseen"][1] == ["left", "go"]


@pytest.mark.parametrize("squared", [False, True])
def test_dtw_benchmark_distance_equals_every_path_enumerated(squared):
    """training/enroll_dtw.py's subsequence DTW against brute force: every start hop and every
    warp with 0, 1 or 2 stream hops per template frame (never 0 twice running), cost / length;
    L1 frame distance, or squared L2 (the richer-frames experiment's)."""
    import itertools

    from hark.training import enroll_dtw as ed
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (30, 4)).astype(np.int32)
    starts, ends, tmpl = [0, 7, 19], [7, 19, 30], [(2, 5), (10, 14), (20, 21), (1, 6)]
    got = ed.sdtw(frames.astype(np.int64), starts, ends, frames.astype(np.int64), *zip(*tmpl),
                  squared=squared)
    for c, (s, e) in enumerate(zip(starts, ends)):
        for m, (a, b) in enumerate(tmpl):
            v = frames[s:e, None].astype(np.int64) - frames[None, a:b]
            d = (v * v if squared else np.abs(v)).sum(-1)
            want = min(sum(d[j, i] for i, j in enumerate(np.cumsum((j0,) + steps)))
                       for j0 in range(e - s)
                       for steps in itertools.product((0, 1, 2), repeat=b - a - 1)
                       if (j0 + sum(steps) < e - s and "00" not in "".join(map(str, steps))))
            assert got[c, m] == want / (b - a), (c, m)
    assert got[0, 0] == got[1, 1] == got[2, 2] == 0      # a template over its own hops


def test_mel_stage_is_what_the_device_dct_reads():
    """device_features_numpy(stage="mel"): the bands whose DCT (the blob's table, bias, shift,
    int8 clamp) is the model input, frame for frame; richer_frames' `mel` fits a byte."""
    from hark.training import enroll_dtw as ed
    from hark.training.blob import read_blob
    from hark.training.frontend_tables import device_features_numpy
    meta, arrays = read_blob(MODELS / "default.hark")
    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal(16000) * np.linspace(0, 8000, 16000)).astype(np.int16)
    pcm[:1000] = 0                                      # digital silence: the bands' floor
    mel = device_features_numpy(pcm, meta, arrays, stage="mel")
    fe = meta["frontend"]
    assert mel.shape == (1 + (16000 - fe["n_fft"]) // fe["hop"], fe["n_mels"])
    dct = np.asarray(arrays["fe.dct"], np.int64).reshape(fe["n_mfcc"], fe["n_mels"])
    acc = mel.astype(np.int64) @ dct.T + np.asarray(arrays["fe.dct_bias"], np.int64)
    mfcc = np.clip(acc >> np.asarray(arrays["fe.dct_shift"], np.int64), -128, 127)
    assert np.array_equal(mfcc, device_features_numpy(pcm, meta, arrays))
    floor = (fe["log_floor"] - fe["log_centre"] + (1 << fe["dct_in_shift"] - 1)) >> fe["dct_in_shift"]
    assert (mel[0] == floor).all() and mel.min() == floor
    byte = ed.richer_frames("mel", [mel], np.ones(len(mel), bool), floor)[0]
    assert byte.min() == 0 and byte.max() < 256


def test_dtw_layout_names_the_streaming_rings():
    """enroll_dtw.layout: the input column (mfcc) and each temporal layer's output, after the
    embedding, with receptive fields growing by each ring's reach."""
    from hark.training import enroll_dtw as ed
    lay = ed.layout(MODELS / "default.hark")
    assert lay["mfcc"] == (64, 74, 1)
    assert [lay[f"conv{i}"][2] for i in range(1, 5)] == [5, 9, 17, 33]
    assert lay["conv4"][1] == 64 + 10 + 4 * 64


def test_firmware_dtw_update_equals_the_benchmark(mpy, tmp_path):
    """firmware/dtw.py's per-hop column update, run over a stream in the unix port, reaches the
    benchmark's subsequence DTW cost (training/enroll_dtw.py) exactly, per template, up to
    dtw.INF (the firmware's uint16 state saturates there)."""
    from hark.training import enroll_dtw as ed
    rng = np.random.default_rng(7)
    width, lengths = 10, [5, 12, 1, 30, 60]
    stream = rng.integers(0, 256, (60, width)).astype(np.uint8)
    stream[20:32] = stream[2:14]                      # a template's own frames, warped below
    tmpl = np.concatenate([stream[40:45], stream[2:14], stream[7:8],
                           np.repeat(rng.integers(0, 256, (15, width)), 2, axis=0),
                           rng.integers(0, 256, (60, width))]).astype(np.uint8)
    (tmp_path / "s.bin").write_bytes(stream.tobytes())
    (tmp_path / "t.bin").write_bytes(tmpl.tobytes())
    r = mpy("import sys, dtw\nfrom array import array\n"
            "s = open(sys.argv[1], 'rb').read()\nt = open(sys.argv[2], 'rb').read()\n"
            f"lengths = bytes({lengths})\nn = len(lengths)\n"
            "state = array('H', [dtw.INF] * (6 * sum(lengths)))\n"
            "out = array('i', [0] * n)\nbest = [dtw.INF] * n\n"
            f"for j in range(len(s) // {width}):\n"
            f" dtw.update(s[{width} * j:{width} * j + {width}], t, lengths, n, {width}, state, j % 3, out)\n"
            " best = [min(a, b) for a, b in zip(best, out)]\n"
            "print(*best)\n", tmp_path / "s.bin", tmp_path / "t.bin")
    assert r.returncode == 0, r.stderr
    ends = np.cumsum(lengths)
    want = ed.sdtw_cost(stream.astype(np.int32), [0], [len(stream)], tmpl.astype(np.int32),
                        ends - lengths, ends)[0]
    assert [int(v) for v in r.stdout.split()] == np.minimum(want, 0x7FFF).tolist()   # saturated
    assert want[1] == 0 and want[0] == 0 and 0 < want[3] < 0x7FFF < want[4]


def test_device_calibration_equals_the_benchmark(mpy, tmp_path):
    """enroll.calibrate (the board, reading the cohort file clip by clip) against training/
    enroll_dtw.py calibrate(): the same kept templates and threshold when all examples agree,
    when one is unlike the others (dropped), when none reaches another (the nearest kept), and
    with a cohort near enough that the threshold is under its cap; a damaged or foreign cohort
    file is refused with what is wrong."""
    from hark.training import enroll_dtw as ed
    rng = np.random.default_rng(5)
    base = rng.integers(40, 216, (24, 10))

    def near(x, d):
        return np.clip(x + rng.integers(-d, d + 1, x.shape), 0, 255).astype(np.uint8)
    far = [rng.integers(0, 256, (int(rng.integers(10, 40)), 10)).astype(np.uint8) for _ in range(6)]
    close = [near(base[int(rng.integers(0, 4)):], 10) for _ in range(6)]
    cases = [("far", [near(base, 4), near(base[2:], 4), near(base, 4)], far),
             ("far", [near(base, 4), near(base, 4), far[0][:15], near(base[1:], 4)], far),
             ("far", far[:3], far),
             ("close", [near(base, 4), near(base[:20], 4), near(base, 4), far[1]], close)]
    model = MODELS / "default.hark"
    for name, cohort in (("far", far), ("close", close)):
        ed.write_cohort(tmp_path / f"{name}.cohort", model, cohort)
    want = [ed.calibrate(ex, cohort) for _, ex, cohort in cases]
    assert {len(k) for k, _ in want} == {1, 3}       # all kept, one dropped, the nearest kept
    assert any(t < ed.CAL_CAP for _, t in want) and any(t == ed.CAL_CAP for _, t in want)
    # a model whose frames have a smaller input scale: the cap scaled (138), as the board does
    want += [ed.calibrate(cases[0][1], far, cap=ed.scaled(ed.CAL_CAP, 0.0489))]
    assert want[-1][1] > ed.CAL_CAP
    with open(tmp_path / "ex.bin", "wb") as f:
        for name, ex, _ in cases:
            f.write(bytes([len(name), len(ex)]) + name.encode() + bytes(len(e) for e in ex))
            f.write(b"".join(e.tobytes() for e in ex))
    damaged = bytearray((tmp_path / "far.cohort").read_bytes())
    damaged[-1] ^= 1
    (tmp_path / "bad.cohort").write_bytes(bytes(damaged))
    r = mpy(f"""
import sys, enroll, enrolled
crc = enrolled.model_crc(sys.argv[2])
d = open(sys.argv[1] + '/ex.bin', 'rb').read()
at = 0
first = None
while at < len(d):
    n, k = d[at], d[at + 1]
    name = str(d[at + 2:at + 2 + n], 'ascii')
    lens = d[at + 2 + n:at + 2 + n + k]
    at += 2 + n + k
    got = []
    for L in lens:
        got.append(d[at:at + 10 * L])
        at += 10 * L
    print(*enroll.calibrate(got, 10, sys.argv[1] + '/' + name + '.cohort', crc))
    if first is None:
        first = got
print(*enroll.calibrate(first, 10, sys.argv[1] + '/far.cohort', crc, 0.0489))
for name, c in (('bad', crc), ('far', crc + 1)):
    try:
        enroll.calibrate(got, 10, sys.argv[1] + '/' + name + '.cohort', c)
    except ValueError as exc:
        print(exc)
""", tmp_path, model)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().split("\n")
    assert lines[:len(want)] == [f"{k} {t}" for k, t in want]
    assert lines[len(want)].endswith("bad.cohort is damaged")
    assert lines[len(want) + 1].endswith("far.cohort belongs to another model")


def test_exhaustive_protocol_takes_every_set_of_one_speakers_clips(tmp_path):
    """training/enroll_dtw.py exhaustive(): for each speaker with more than k clips of a word,
    every k of their heard clips (never one the board would refuse) enrolls once, the rest of
    theirs is tested, and false accepts count that speaker half's clips of the other words; a
    matcher that fires on exactly the enrolled speaker's clips scores 100 % and 0 per hour."""
    from itertools import combinations
    from types import SimpleNamespace

    from hark.training import enroll_dtw as ed
    from hark.training import enroll_eval as ee
    rng = np.random.default_rng(3)
    clips, hops = [], []
    for i, (word, spk) in enumerate([("w", "a")] * 5 + [("w", "b")] * 3 + [("x", "a"), ("x", "c")]):
        path = tmp_path / f"{i}" / f"{spk}_nohash_{i}.wav"
        path.parent.mkdir()
        sf.write(str(path), np.zeros(16000, np.int16), RATE, subtype="PCM_16")
        clips.append(SimpleNamespace(path=path, word=word))
        h = rng.integers(100, 256, (6, 64)).astype(np.uint8)
        h[0] = 1
        if i == 4:
            h[1:] = 1                   # speaker a's last "w": nothing in it, never enrolled
        hops.append(h)
    bank = ee.Bank(clips, hops)
    seen = []

    class Speaker:
        def score(self, enroll):
            seen.append(tuple(enroll))
            return (bank.speaker != bank.speaker[enroll[0]]).astype(float), 0.5

        @staticmethod
        def threshold(spread, factor):
            return spread * factor / 16
    out = ed.exhaustive(bank, Speaker(), ["w"], ks=(3,))
    assert sorted(seen) == list(combinations(range(4), 3))     # b has 3 clips: not more than k
    row, = out["rows"]
    assert (row["speaker"], row["k"], row["sets"], row["recall"]) == ("a", 3, 4, 1.0)
    neg = [8] + [9] * int(bank.half[9] == bank.half[0])    # speaker a's half, the other word
    assert row["fa_per_hour"] == (bank.half[9] == bank.half[0]) * 3600 / bank.seconds[neg].sum()
    text = (REPO / "firmware" / "enroll.py").read_text()
    assert f"THRESHOLDS = {ed.FIXED}\n" in text     # the benchmark's fixed rule is the firmware's


@pytest.mark.parametrize("cohort", sorted(MODELS.glob("*.cohort")), ids=lambda p: p.name)
def test_shipped_cohort_is_tied_to_its_own_model(cohort):
    """A cohort holds device MFCC frames quantised with its model's input scale, so each model
    needs its own; the firmware takes one only beside the blob whose header CRC it names."""
    import struct
    from hark.training import enroll_dtw as ed
    from hark.training.blobmeta import header_crc
    assert ed.read_cohort(cohort)          # intact: read_cohort checks the magic and the body CRC
    crc_model = struct.unpack_from(ed.COHORT_HEAD, cohort.read_bytes())[3]
    assert crc_model == header_crc(cohort.with_suffix(".hark"))


def test_enrollment_constants_follow_the_models_input_scale(mpy):
    """The thresholds (fixed, and the calibrated one's cap) are int8 distances picked on frames
    at one input scale; a model whose training set normalises its features to another scale
    gets them scaled (the default, at 0.0489, heard 30-75 % fewer enrolled words unscaled).
    Models at the scale they were picked on (esp32, wide) keep them exactly; the board scales
    them as the benchmark does."""
    from hark.training import enroll_dtw as ed
    scaled = {}
    for cohort in sorted(MODELS.glob("*.cohort")):
        scale = ed.input_scale(cohort.with_suffix(".hark"))
        scaled[cohort.stem] = [ed.scaled(ed.CAL_CAP, scale)] + [ed.scaled(t, scale)
                                                                for t in ed.FIXED]
    assert scaled["esp32"] == scaled["wide"] == [ed.CAL_CAP] + list(ed.FIXED)
    assert scaled["default"] == [138, 103, 103, 103, 103, 115]
    text = (REPO / "firmware" / "enroll.py").read_text()
    assert f"CONSTANTS_INPUT_SCALE = {ed.CONSTANTS_INPUT_SCALE}\n" in text
    scales = (0.0489, 0.0562, 0.0609, 0.1)
    r = mpy(f"import enroll\nprint('%.6f' % enroll.input_scale({str(MODELS / 'default.hark')!r}), "
            "enroll.input_scale('no-such.hark'))\n" + "".join(
        f"print(enroll.scaled(enroll.CAL_CAP, {x}), *[enroll.threshold(k, {x}) for k in range(2, 6)])\n"
        for x in scales))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines.pop(0) == f"{ed.input_scale(MODELS / 'default.hark'):.6f} None"
    assert lines[:len(scales)] == [
        " ".join(str(v) for v in [ed.scaled(ed.CAL_CAP, x)] + [ed.scaled(ed.FIXED[min(k, 4)], x)
                                                               for k in range(2, 6)])
        for x in scales]
