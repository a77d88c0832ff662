"""hark synth: TTS clips are deterministic, 1 s 16 kHz mono 16-bit, in Speech Commands layout."""
import csv
import hashlib

import numpy as np
import pytest
import soundfile as sf

from hark.cli import main
from hark.training import augment as aug, synth

pytestmark = pytest.mark.skipif(
    not all(synth.installed(e) for e in synth.DEFAULT_ENGINES),
    reason="espeak-ng, flite and festival are needed (apt-get install espeak-ng flite festival)")


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.wav"))}


@pytest.fixture(scope="module")
def voices():
    return synth.list_voices()


def test_voices_from_every_engine_and_a_disjoint_holdout(voices):
    engines = {v.engine for v in voices}
    assert engines == set(synth.DEFAULT_ENGINES)
    train = synth.select_voices(voices, "train")
    holdout = synth.select_voices(voices, "holdout")
    assert {v.engine for v in holdout} == engines     # every engine has unseen speakers
    assert not {v.id for v in train} & {v.id for v in holdout}
    assert all("_" not in v.id and "/" not in v.id for v in voices)
    assert not {v.id for v in voices} & synth.BROKEN_VOICES


@pytest.mark.parametrize("engine", synth.DEFAULT_ENGINES)
def test_each_engine_is_deterministic_and_seed_dependent(voices, engine, tmp_path):
    voice = next(v for v in voices if v.engine == engine)
    a, pa = synth.synth_clip(voice, "off", 3, seed=7, tmpdir=str(tmp_path))
    b, pb = synth.synth_clip(voice, "off", 3, seed=7, tmpdir=str(tmp_path))
    c, _ = synth.synth_clip(voice, "off", 3, seed=8, tmpdir=str(tmp_path))
    assert a.dtype == np.int16 and a.shape == (16000,)
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)
    assert np.abs(a).max() > 300           # a word, not silence


def test_same_seed_same_bytes_whatever_the_process_count(tmp_path):
    kw = dict(words=["on", "hey hark"], per_word=1, unknown=1, seed=5, progress=False)
    synth.synthesize(tmp_path / "a", jobs=1, **kw)
    synth.synthesize(tmp_path / "b", jobs=2, **kw)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert len(a) == 3 and a == b
    assert (tmp_path / "a" / "voices.csv").read_bytes() == (tmp_path / "b" / "voices.csv").read_bytes()
    # a rerun with another seed replaces the clips instead of piling up beside them
    synth.synthesize(tmp_path / "a", jobs=1, **dict(kw, seed=6))
    c = digests(tmp_path / "a")
    assert len(c) == 3 and set(c.values()).isdisjoint(a.values())
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")) == []


def test_cli_writes_speech_commands_layout(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--words", "off:2, hey  hark", "--per-word", "2", "--unknown", "3",
                 "--out", str(out), "--jobs", "1", "--voice-set", "holdout"]) == 0
    wavs = sorted(out.rglob("*.wav"))
    assert len(wavs) == 7
    folders = {p.parent.name for p in wavs}
    assert {"off", "hey_hark"} <= folders
    unknown = folders - {"off", "hey_hark"}
    assert unknown and not unknown & set(synth.COMMANDS)
    for p in wavs:
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        assert p.name.split("_nohash_")[0].split("-")[0] in ("espeak", "flite", "festival")
    with open(out / "voices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(p.relative_to(out).as_posix() for p in wavs)
    assert {r["split"] for r in rows} == {"holdout"}
    offsets = {r["offset_ms"] for r in rows}
    assert len(offsets) > 3                # the word moves around the window
    assert "wrote 7 clips" in capsys.readouterr().out
    assert {r["licence"] for r in rows} <= {synth.LICENCES[e] for e in synth.DEFAULT_ENGINES}
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert any(f"clips; licence {synth.LICENCES[e]}" in info for e in synth.DEFAULT_ENGINES)


def test_word_counts_parse():
    from hark.cli import HarkError
    from hark.commands.synth import parse_words
    assert parse_words("on:600, off ,hey  hark:3", 150) == {"on": 600, "off": 150, "hey hark": 3}
    for bad in ("on:x", "on:0", "!!"):
        with pytest.raises((HarkError, ValueError)):
            parse_words(bad, 1)


def test_unknown_pool_excludes_commands_and_targets():
    pool = synth.unknown_words(exclude=["hey hark", "often"])
    labels = {synth.label_for(w) for w in pool}
    assert len(labels) >= 300
    assert not labels & set(synth.COMMANDS) and not labels & {"hey_hark", "often"}
    assert {"of", "one", "gone", "nope", "know", "dawn", "hey"} <= labels


def test_near_misses_of_a_wake_phrase():
    """Its words alone and its last word's onset swapped; never the phrase itself, no repeats."""
    assert synth.near_miss_phrases("Hey  Hark") == [
        "hey", "hark", "hey bark", "hey dark", "hey mark", "hey park", "hey sark", "hey tark"]
    assert synth.near_miss_phrases("ok lamp")[:4] == ["ok", "lamp", "ok bamp", "ok damp"]
    # one word: only the swaps (a vowel onset gets a consonant in front)
    assert synth.near_miss_phrases("alexa") == [c + "alexa" for c in synth.NEAR_MISS_ONSETS]
    assert synth.near_miss_phrases("hey hey") == ["hey"] + [
        f"hey {c}ey" for c in synth.NEAR_MISS_ONSETS]
    with pytest.raises(ValueError):
        synth.near_miss_phrases("  ")


def test_cli_near_misses_are_words_of_their_own(tmp_path, capsys):
    assert main(["synth", "--near-misses", "hey hark", "--words", "on:1", "--per-word", "1",
                 "--no-augment", "--engines", "flite", "--out", str(tmp_path / "n")]) == 0
    folders = sorted(p.name for p in (tmp_path / "n").iterdir() if p.is_dir())
    assert folders == ["hark", "hey", "hey_bark", "hey_dark", "hey_mark", "hey_park", "hey_sark",
                       "hey_tark", "on"]
    capsys.readouterr()
    assert main(["synth", "--near-misses", " ", "--out", str(tmp_path / "e")]) == 1
    assert "no words in the wake phrase" in capsys.readouterr().err


def test_engine_failure_is_a_clear_error(tmp_path):
    bad = synth.Voice("festival-nope", "festival", "nope")
    with pytest.raises(RuntimeError, match="festival-nope wrote no audio for 'on"):
        synth.synth_clip(bad, "on", 0, seed=0, tmpdir=str(tmp_path))


def test_missing_engine_names_the_debian_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))          # no TTS binaries here
    with pytest.raises(synth.EngineMissing, match="apt-get install espeak-ng"):
        synth.list_voices(["espeak-ng"])
    assert main(["synth", "--words", "on", "--out", str(tmp_path / "o"),
                 "--engines", "flite"]) == 1
    assert "apt-get install flite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_formant_warp_is_drawn_per_clip_and_recorded(voices, tmp_path):
    voice = next(v for v in voices if v.engine == "espeak-ng")
    plain, p0 = synth.synth_clip(voice, "off", 1, seed=3, tmpdir=str(tmp_path), augment=False)
    warped, p1 = synth.synth_clip(voice, "off", 1, seed=3, tmpdir=str(tmp_path), augment=False,
                                  formant_prob=1.0)
    assert p0["formant"] == 1.0 and aug.FORMANT_RANGE[0] <= p1["formant"] <= aug.FORMANT_RANGE[1]
    assert p1["formant"] != 1.0 and not np.array_equal(plain, warped)


def test_formant_warp_out_of_range_is_refused(tmp_path, capsys):
    assert main(["synth", "--words", "off", "--out", str(tmp_path / "x"), "--formant-warp", "2"]) == 1
    assert "--formant-warp is a share of clips" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
