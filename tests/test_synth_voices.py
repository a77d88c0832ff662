"""The optional voice families of `hark synth` (MBROLA, RHVoice, SVOX Pico, Kokoro).

Bookkeeping (voice split, licences, engine choice and shares) is tested without the
engines; rendering tests skip cleanly when an engine is not installed (`make synth-deps`
installs them all; `make test` does not need them).
"""
import csv
import hashlib
import os
import stat

import numpy as np
import pytest

from hark.cli import HarkError, main
from hark.commands.synth import parse_engines
from hark.training import kokoro, synth

NEW_ENGINES = ("mbrola", "rhvoice", "pico", "kokoro")


def needs(engine):
    return pytest.mark.skipif(not synth.installed(engine),
                              reason=f"TTS engine {engine} not installed (make synth-deps)")


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """A PATH with no TTS engine and no Kokoro packages; fake_binary puts one there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(kokoro, "available", lambda: False)

    def fake_binary(name):
        path = bin_dir / name
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return fake_binary


def test_every_engine_has_a_licence_a_share_and_an_install_hint():
    assert set(synth.LICENCES) == set(synth.ENGINE_WEIGHTS) == set(synth.ENGINES)
    assert set(synth.DEFAULT_ENGINES) < set(synth.ENGINES)
    assert "make synth-deps" in synth.ENGINES["mbrola"][1] and "mbrola-de4" in synth.ENGINES["mbrola"][1]
    # RHVoice's non-commercial voices are never used
    assert not {"evgeniy-eng", "lyubov"} & set(synth.RHVOICE_VOICES)
    assert "mbrola-us3" in synth.BROKEN_VOICES


def test_new_families_have_fixed_holdout_voices_and_licences():
    voices = {v.id: v for v in (
        synth.Voice("mbrola-us1", "mbrola", "mb-us1"), synth.Voice("mbrola-us2", "mbrola", "mb-us2"),
        synth.Voice("mbrola-de4-en", "mbrola", "mb-de4-en"),
        synth.Voice("mbrola-fr4-en", "mbrola", "mb-fr4-en"),
        synth.Voice("rhvoice-slt", "rhvoice", "slt"), synth.Voice("rhvoice-clb", "rhvoice", "clb"),
        synth.Voice("pico-en-us", "pico", "en-US"), synth.Voice("pico-en-gb", "pico", "en-GB"))}
    assert {i for i, v in voices.items() if v.split == "holdout"} == {
        "mbrola-us2", "mbrola-fr4-en", "rhvoice-clb", "pico-en-gb"}
    assert voices["rhvoice-slt"].licence == "LGPL-2.1-or-later"
    assert voices["pico-en-us"].licence == "Apache-2.0"
    assert "military" in voices["mbrola-de4-en"].licence
    assert "military" not in voices["mbrola-us1"].licence


def test_kokoro_voices_hold_out_one_style_with_its_blends(monkeypatch):
    monkeypatch.setattr(synth, "check_engine", lambda engine: None)
    voices = synth.list_voices(["kokoro"])
    assert len(voices) == 2 * (5 + 10) and len({v.id for v in voices}) == len(voices)
    assert all("_" not in v.id and v.id.startswith("kokoro-") for v in voices)
    holdout = [v for v in voices if v.split == "holdout"]
    assert len(holdout) == 2 * 5 and all("tebukuro" in v.id for v in holdout)
    assert {v.licence for v in voices} == {synth.LICENCES["kokoro"]}


def test_engine_choice_and_shares_parse(bare_path, capsys):
    assert parse_engines("mbrola:2, pico") == {"mbrola": 2.0, "pico": None}
    for bad in ("nope", "pico:0", "pico:x", " , "):
        with pytest.raises(HarkError):
            parse_engines(bad)
    with pytest.raises(HarkError, match="no TTS engine is installed"):
        parse_engines("all")
    bare_path("pico2wave")
    bare_path("espeak-ng")
    assert parse_engines("all") == {"espeak-ng": None, "pico": None}   # only those installed
    err = capsys.readouterr().err
    assert "skipping TTS engine mbrola" in err and "make synth-deps" in err
    assert "skipping TTS engine kokoro" in err and "requirements/voices.txt" in err


def test_a_missing_optional_engine_is_a_clear_error(bare_path, tmp_path, capsys):
    assert main(["synth", "--words", "off", "--out", str(tmp_path / "o"), "--engines", "mbrola"]) == 1
    err = capsys.readouterr().err
    assert "mbrola not found" in err and "contrib/non-free" in err and "mbrola-us1" in err
    assert not (tmp_path / "o").exists()


def test_plan_shares_follow_the_weights():
    voices = [synth.Voice(f"mbrola-v{i}", "mbrola", f"v{i}") for i in range(3)] + \
             [synth.Voice("pico-en-us", "pico", "en-US")]
    jobs = synth.plan({"off": 2000}, 0, 0, voices, seed=1, weights={"mbrola": 3, "pico": 1})
    share = sum(v.engine == "mbrola" for *_, v in jobs) / len(jobs)
    assert 0.72 < share < 0.78
    default = synth.plan({"off": 2000}, 0, 0, voices, seed=1)      # ENGINE_WEIGHTS: .35/.10
    share = sum(v.engine == "mbrola" for *_, v in default) / len(default)
    assert 0.75 < share < 0.81


@needs("espeak-ng")
def test_kokoro_phonemes_from_espeak_ipa():
    assert kokoro.to_phonemes("go", "en-us") == "ɡˈO" and kokoro.to_phonemes("go", "en-gb") == "ɡˈQ"
    assert kokoro.to_phonemes("hey hark", "en-us") == "hˈA hˈɑɹk"
    assert kokoro.to_phonemes("joy light", "en-gb") == "ʤˈY lˈIt"
    assert kokoro.to_phonemes("off", "en-gb") == "ˈɒf"


def voiced_seconds(y, sr):
    """Time within 20 dB of the loudest 25 ms frame: the vowel and voiced consonants."""
    import librosa
    energy = librosa.feature.rms(y=y, frame_length=int(0.025 * sr), hop_length=int(0.01 * sr))[0]
    return (energy > energy.max() * 0.1).sum() * 0.01


@pytest.mark.parametrize("engine", NEW_ENGINES)
def test_every_voice_says_on_and_off_audibly(engine, tmp_path):
    """Raw engine output, before any perturbation: a voice that drops the vowel (as
    MBROLA us3 does) gives near-silence and fails here."""
    if not synth.installed(engine):
        pytest.skip(f"TTS engine {engine} not installed (make synth-deps)")
    voices = synth.list_voices([engine])
    assert {v.split for v in voices} == {"train", "holdout"}
    assert not {v.id for v in voices} & synth.BROKEN_VOICES
    if engine == "kokoro":             # ~0.8 s a render: the styles alone, one accent
        voices = [v for v in voices if v.name.startswith("en-us:") and "+" not in v.name]
    for voice in voices:
        for word in ("on", "off"):
            y, sr, _ = synth.render(voice, word, np.random.default_rng(0), str(tmp_path))
            assert np.abs(y).max() > 0.1, (voice.id, word)
            assert 0.06 < voiced_seconds(y, sr) < 0.8, (voice.id, word)


@pytest.mark.parametrize("engine", NEW_ENGINES)
def test_new_engine_clips_are_deterministic_and_record_the_licence(engine, tmp_path):
    if not synth.installed(engine):
        pytest.skip(f"TTS engine {engine} not installed (make synth-deps)")
    kw = dict(words={"off": 3}, unknown=1, seed=4, engines=[engine], progress=False)
    synth.synthesize(tmp_path / "a", jobs=1, **kw)
    synth.synthesize(tmp_path / "b", jobs=2, **kw)
    digests = [{p.relative_to(d).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                for p in sorted(d.rglob("*.wav"))} for d in (tmp_path / "a", tmp_path / "b")]
    assert len(digests[0]) == 4 and digests[0] == digests[1]
    assert len(set(digests[0].values())) == 4
    with open(tmp_path / "a" / "voices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["engine"] for r in rows} == {engine}
    assert {r["licence"] for r in rows} <= {synth.LICENCES[engine], *synth.VOICE_LICENCES.values()}
    assert {r["split"] for r in rows} == {"train"}
    assert all(os.path.basename(r["path"]).startswith(f"{engine}-") for r in rows)


@needs("mbrola")
def test_mbrola_vowels_last_about_as_long_as_real_speakers(tmp_path):
    """At espeak-ng's usual 110-230 wpm MBROLA's "off" is voiced for ~0.11 s (median),
    real speakers' for ~0.25 s: MBROLA speaks slower."""
    voice = synth.Voice("mbrola-us1", "mbrola", "mb-us1")
    voiced = [voiced_seconds(*synth.render(voice, "off", np.random.default_rng(i), str(tmp_path))[:2])
              for i in range(12)]
    assert np.median(voiced) >= 0.15
