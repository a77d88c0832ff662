"""The speech teacher, distillation into a student, and speaker-grouped cross-validation."""
import json

import numpy as np
import pytest

from hark.training import crossval
from hark.training import dataset as ds
from hark.training.features import fit_clip
from hark.training.train import apply_cv_fold, speaker

pytest.importorskip("onnxruntime")


def test_one_pass_embedding_equals_the_windowed_model(shared_data):
    """The patched graph (one pass over 2 s) gives exactly openwakeword's 16 windows."""
    import onnxruntime as ort
    from hark.training.teacher import SpeechEmbedding, model_dir

    clips = ds.load_dataset(shared_data).clips[::900][:4]
    audio, _, _ = ds.load_clips(clips)
    x = np.stack([fit_clip(y) for y in audio])
    teacher = SpeechEmbedding(threads=1)
    fast = teacher(x)
    windowed = ort.InferenceSession(str(model_dir() / "embedding_model.onnx"),
                                    providers=["CPUExecutionProvider"])
    spec = teacher.mel(x)
    for step in (0, 7, 15):
        window = spec[:, 8 * step:8 * step + 76, :, None]
        ref = windowed.run(None, {"input_1": window})[0].reshape(len(x), 96)
        np.testing.assert_allclose(fast[:, step], ref, rtol=1e-5, atol=1e-4)
    assert fast.shape == (len(x), 16, 96)


def test_cached_embedding_is_reused(tmp_path, monkeypatch):
    from hark.training.teacher import SpeechEmbedding

    monkeypatch.setenv("HARK_CACHE", str(tmp_path))
    teacher = SpeechEmbedding(threads=1)
    x = np.random.default_rng(0).uniform(-0.1, 0.1, (2, 16000)).astype(np.float32)
    first = teacher.cached(x)
    assert len(list((tmp_path / "teacher").glob("*.npy"))) == 1
    def no_compute(self, clips):
        raise AssertionError("a cache hit must not compute again")
    monkeypatch.setattr(SpeechEmbedding, "__call__", no_compute)
    np.testing.assert_array_equal(teacher.cached(x), first)


def test_distill_loss_mixes_hard_and_soft_cross_entropy():
    from hark.training.distill import distill_loss, pack, packed_accuracy

    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], np.float32)
    soft = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], np.float32)
    y = pack(np.array([0, 2]), soft, 3, hard_weight=[1.0, 0.0])
    t = 2.0
    got = np.asarray(distill_loss(3, t, 0.25)(y, logits))

    def log_softmax(z):
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    hard_ce = -log_softmax(logits)[[0, 1], [0, 2]] * np.array([1.0, 0.0])
    soft_ce = -(soft * log_softmax(logits / t)).sum(axis=1)
    np.testing.assert_allclose(got, 0.75 * hard_ce + 0.25 * t * t * soft_ce, rtol=1e-5)
    assert float(packed_accuracy(3)(y, logits)) == 0.5   # row 0 right, row 1 (label 2) wrong


def test_cv_folds_never_test_a_trained_speaker(shared_data):
    folds = 4
    tested = []
    for fold in range(folds):
        d = ds.load_dataset(shared_data)
        apply_cv_fold([d], folds, fold)
        test = {speaker(c.path) for c in d.split("test") if c.label in ("on", "off", ds.UNKNOWN)}
        trained = {speaker(c.path) for c in d.split("train") + d.split("validation")}
        assert test and not test & trained
        tested += [c.path for c in d.split("test") if c.label in ("on", "off", ds.UNKNOWN)]
    scarce = [c.path for c in ds.load_dataset(shared_data).clips
              if c.label in ("on", "off", ds.UNKNOWN)]
    assert sorted(tested) == sorted(scarce)   # every scarce clip tested exactly once


def _fake_metrics(labels, correct):
    k = len(labels)
    confusion = np.zeros((k, k), int)
    for i in range(k):
        confusion[i, i] = correct
        confusion[i, (i + 1) % k] = 10 - correct
    return {"labels": labels, "confusion": confusion.tolist()}


def test_crossval_sums_scarce_rows_over_folds(tmp_path):
    labels = list(ds.LABELS)
    for fold, correct in enumerate((10, 5)):
        run = tmp_path / f"seed0_fold{fold}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps(
            {"float_test": _fake_metrics(labels, correct)}))
    result = crossval.summarise(tmp_path, 2, [0])
    assert result["student"][0]["on"] == pytest.approx(0.75)       # 15 of 20
    assert result["student"][0]["n"]["on"] == 20
    assert "± 0.0" in crossval.markdown(result, "fake")


def test_crossval_offset_scan_moves_decisions_to_the_offset_class():
    """A logit offset on _unknown_ turns near ties into _unknown_ and leaves clear decisions."""
    labels = list(ds.LABELS)
    k, on = labels.index(ds.UNKNOWN), labels.index("on")
    logits = np.zeros((4, len(labels)))
    logits[:2, on] = [0.5, 5.0]          # "on" clips: a near tie and a clear one
    logits[2:, on] = [0.5, 0.2]          # unknown-word clips heard as "on"
    y = np.array([on, on, k, k])
    scan = crossval.offset_summaries({0: [(logits, y, labels)]}, [ds.UNKNOWN], [0.0, 1.0])
    assert (scan[0.0][0]["on"], scan[0.0][0][ds.UNKNOWN]) == (1.0, 0.0)
    assert (scan[1.0][0]["on"], scan[1.0][0][ds.UNKNOWN]) == (0.5, 1.0)
    assert (scan[0.0][0]["taken"], scan[1.0][0]["taken"]) == (0, 1)   # the near-tie "on" clip
    assert "| +1 |" in crossval.offsets_markdown(scan, [ds.UNKNOWN])
    assert crossval.parse_offsets("_unknown_=-1,0,0.5") == ([ds.UNKNOWN], [-1.0, 0.0, 0.5])


def test_crossval_offset_scan_raises_several_classes_over_a_fixed_one():
    """--offsets on,off=V raises both logits together, --with-offset holds _unknown_'s in every
    row, and "taken" counts the clips of other classes the raised ones now win."""
    labels = list(ds.LABELS)
    k, on, off, up = (labels.index(x) for x in (ds.UNKNOWN, "on", "off", "up"))
    logits = np.zeros((4, len(labels)))
    logits[0, [on, k]] = [1.0, 1.5]      # "on" lost to _unknown_ by 0.5 (1.5 with _unknown_ +1)
    logits[1, [off, up]] = [1.0, 1.8]    # "off" heard as "up" by 0.8
    logits[2, [up, off]] = [3.0, 0.5]    # "up", clearly
    logits[3, [k, on]] = [1.0, 0.8]      # an unknown word 0.2 (1.2 with +1) above "on"
    y = np.array([on, off, up, k])
    scan = crossval.offset_summaries({0: [(logits, y, labels)]}, ["on", "off"], [0.0, 1.0, 2.0],
                                     fixed={ds.UNKNOWN: 1.0})
    assert [(s[0]["on"], s[0]["off"], s[0]["taken"]) for s in scan.values()] == [
        (0.0, 0.0, 0), (0.0, 1.0, 0), (1.0, 1.0, 1)]          # at +2 "up" stays, the word goes
    table = crossval.offsets_markdown(scan, ["on", "off"], {ds.UNKNOWN: 1.0})
    assert "`on`, `off` logit offset, `_unknown_` +1 in every row" in table
    assert crossval.parse_offsets("on, off=0,1") == (["on", "off"], [0.0, 1.0])
    assert crossval.label_values(["_unknown_=1"]) == {ds.UNKNOWN: 1.0}   # --with-offset


@pytest.mark.slow
def test_train_with_teacher_reports_teacher_and_student(shared_data, tmp_path, monkeypatch):
    from hark.cli import main

    monkeypatch.setenv("HARK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    synth_folder = tmp_path / "synth"     # four "on" clips: real ones stand in for synthetic
    (synth_folder / "on").mkdir(parents=True)
    for i, clip in enumerate(sorted((shared_data / "on").glob("*.flac"))[:4]):
        (synth_folder / "on" / f"voice{i}_nohash_0.flac").write_bytes(clip.read_bytes())
    rc = main(["train", "--data", str(shared_data), "--out", str(out), "--epochs", "1",
               "--max-per-word", "6", "--width", "8", "--teacher", "oww-embedding",
               "--teacher-extra", "8", "--cv-folds", "3", "--cv-fold", "0",
               "--synth", str(synth_folder), "--teacher-filter", "0.3"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())["float_test"]
    assert metrics["teacher"]["test"]["n"] == metrics["n"]
    assert metrics["cv"] == {"folds": 3, "fold": 0}
    kept, total = metrics["teacher"]["synthetic_kept"]["on"]
    assert total == 4 and kept <= total


@pytest.mark.slow
def test_soft_weight_zero_uses_the_teacher_only_as_a_judge(shared_data, tmp_path, monkeypatch):
    """With --soft-weight 0 the teacher labels the synthetic clips once (to judge them) and the
    test set (to report itself), never the training examples: their labels would be unused."""
    from hark.cli import main
    from hark.training.distill import Teacher

    monkeypatch.setenv("HARK_CACHE", str(tmp_path / "cache"))
    labelled = []
    logits = Teacher.logits
    monkeypatch.setattr(Teacher, "logits",
                        lambda self, clips: labelled.append(len(clips)) or logits(self, clips))
    synth_folder = tmp_path / "synth"
    (synth_folder / "off").mkdir(parents=True)
    for i, clip in enumerate(sorted((shared_data / "off").glob("*.flac"))[:5]):
        (synth_folder / "off" / f"voice{i}_nohash_0.flac").write_bytes(clip.read_bytes())
    out = tmp_path / "run"
    rc = main(["train", "--data", str(shared_data), "--out", str(out), "--epochs", "1",
               "--max-per-word", "6", "--width", "8", "--teacher", "oww-embedding",
               "--soft-weight", "0", "--teacher-filter", "0.3", "--cv-folds", "3",
               "--cv-fold", "0", "--synth", str(synth_folder)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())["float_test"]
    assert labelled == [5, metrics["n"]]
    assert metrics["teacher"]["synthetic_kept"]["off"][1] == 5


def test_teacher_flags_are_checked_before_work(tmp_path, capsys):
    from hark.cli import main

    assert main(["train", "--data", str(tmp_path), "--teacher-extra", "5"]) == 1
    assert "need --teacher" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--teacher", "oww-embedding",
                 "--soft-weight", "0", "--teacher-extra", "5"]) == 1
    assert "--soft-weight 0" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--cv-folds", "3", "--cv-fold", "3"]) == 1
    assert main(["train", "--data", str(tmp_path), "--teacher", "oww-embedding",
                 "--teacher-filter-labels", "on,off"]) == 1
    assert "add --teacher-filter P" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--teacher", "oww-embedding",
                 "--teacher-filter", "0.3", "--teacher-filter-labels", "on,of"]) == 1
    assert "the teacher judges the command labels only" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--wake", "hey hark", "--synth",
                 str(tmp_path), "--teacher", "oww-embedding"]) == 1
    assert "wake-word-only run" in capsys.readouterr().err


def test_teacher_correction_swaps_a_wrong_top_class_with_the_label():
    from hark.training.distill import correct_soft

    soft = np.array([[0.1, 0.7, 0.2],     # label 0, teacher says 1: swap 0 and 1
                     [0.6, 0.3, 0.1],     # label 0, teacher agrees: unchanged
                     [0.5, 0.4, 0.1]],    # teacher-only clip: unchanged
                    np.float32)
    got = correct_soft(soft, np.array([0, 0, -1]))
    expected = soft.copy()
    expected[0] = np.array([0.7, 0.1, 0.2], np.float32)
    np.testing.assert_array_equal(got, expected)
    assert soft[0, 0] == np.float32(0.1)   # the caller's array is left alone


def test_teacher_correction_can_be_limited_to_some_top_classes():
    from hark.training.distill import correct_soft

    soft = np.array([[0.1, 0.7, 0.2],     # label 0, teacher says 1 (not correctable): kept
                     [0.1, 0.2, 0.7]],    # label 0, teacher says 2: swapped
                    np.float32)
    got = correct_soft(soft, np.array([0, 0]), tops=[2])
    np.testing.assert_array_equal(got[0], soft[0])
    np.testing.assert_array_equal(got[1], soft[1, [2, 1, 0]])


def test_teacher_filter_labels_judge_only_those_clips():
    """With judged labels the teacher hears only their clips; the rest are kept unheard."""
    from hark.training.distill import judge_synthetic

    labels = list(ds.LABELS)
    clips = [ds.Clip(f"{w}{i}.wav", w, ds.label_for(w), "train")
             for w in ("on", "off", "bird") for i in range(2)]
    audio = [np.full(16000, k / 100, np.float32) for k in range(len(clips))]
    heard = []

    class Teacher:     # hears every clip as "up": own label below 0.01
        def logits(self, batch):
            heard.append(len(batch))
            p = np.full((len(batch), len(labels)), 0.1 / (len(labels) - 1))
            p[:, labels.index("up")] = 0.9
            return np.log(p)

    kept_audio, kept, report = judge_synthetic(Teacher(), audio, clips, labels, 0.3, {"off"})
    assert heard == [2]
    assert [c.word for c in kept] == ["on", "on", "bird", "bird"] and len(kept_audio) == 4
    assert report == {"on": [2, 2], "off": [0, 2], ds.UNKNOWN: [2, 2]}
    heard.clear()
    assert len(judge_synthetic(Teacher(), audio, clips, labels, 0.3)[1]) == 0
    assert heard == [6]


def test_judge_counts_what_the_teacher_filter_keeps_per_engine(tmp_path):
    """The judge's "kept" is the filter's rule: own-label probability >= P, even when another
    word is the teacher's top choice."""
    import soundfile as sf
    from hark.training.judge import judge, markdown

    labels = list(ds.LABELS)
    (tmp_path / "off").mkdir()
    rows = ["path,word,label,voice,engine"]
    for name in ("a", "b", "c"):
        sf.write(tmp_path / "off" / f"{name}_nohash_0.wav", np.zeros(16000, np.float32), 16000)
        rows.append(f"off/{name}_nohash_0.wav,off,off,{name},mbrola")
    (tmp_path / "voices.csv").write_text("\n".join(rows) + "\n")

    class Teacher:     # a: heard as off; b: up first but off at 0.4; c: off at 0.1
        def logits(self, clips):
            p = np.full((3, len(labels)), 1e-6)
            for row, (off, up) in enumerate([(0.9, 0.1), (0.4, 0.6), (0.1, 0.9)]):
                p[row, labels.index("off")], p[row, labels.index("up")] = off, up
            return np.log(p)

    result = judge(Teacher(), [tmp_path], labels, {"off"}, min_prob=0.3)
    assert result[("mbrola", "off")] == {"n": 3, "heard_right": 1, "kept": 2,
                                         "top_error": ("up", 2)}
    assert "| mbrola | off | 3 | 33 % | 67 % | up (2) |" in markdown(result, 0.3)
    (tmp_path / "off").rename(tmp_path / "scoff")           # now unknown words, as one
    (tmp_path / "voices.csv").write_text("\n".join(rows).replace("off/", "scoff/") + "\n")
    result = judge(Teacher(), [tmp_path], labels, {ds.UNKNOWN}, min_prob=0.3)
    assert list(result) == [("mbrola", ds.UNKNOWN)] and result[("mbrola", ds.UNKNOWN)]["n"] == 3


def test_teacher_learns_the_labels_only_synthetic_clips_have():
    """A wake phrase has no real clips: its synthetic clips join the teacher's training set,
    the synthetic clips of words real speech has do not."""
    from hark.training.distill import synthetic_only

    labels = list(ds.LABELS) + ["hey_hark"]
    real = [ds.Clip("on0.wav", "on", "on", "train"), ds.Clip("up0.wav", "up", "up", "train")]
    synth = [ds.Clip(f"{w}{i}.wav", w, w, "train")
             for i, w in enumerate(("on", "hey_hark", "hey_hark"))]
    audio = [np.full(16000, k, np.float32) for k in range(len(synth))]
    only_audio, only = synthetic_only(real, audio, synth, labels)
    assert [c.label for c in only] == ["hey_hark", "hey_hark"]
    assert [a[0] for a in only_audio] == [1, 2]
    assert synthetic_only(real + only, audio, synth, labels) == ([], [])


def test_word_parts_keep_their_unknown_label_under_a_teacher():
    """The teacher labels source clips whole; a word's tail cut from one is _unknown_ by rule
    (the teacher would hear the word), so it gets a near one-hot _unknown_ label."""
    from hark.training.train import TrainConfig, build_training_set

    cfg = TrainConfig(data=[], wake="hey hark", commands=["on"], class_size=4, views=1,
                      tail_unknown=1.0, dc_prob=0, dc_silence_prob=0)
    real = [ds.Clip(f"{w}{i}.wav", w, ds.label_for(w, cfg.labels), "train")
            for w in ("on", "bird") for i in range(2)]
    synth = [ds.Clip(f"hh{i}.wav", "hey_hark", "hey_hark", "train") for i in range(2)]
    tone = np.sin(np.arange(16000) * 0.1).astype(np.float32) * 0.3

    class Teacher:     # hears everything as "on"
        def logits(self, clips):
            z = np.zeros((len(clips), len(cfg.labels)), np.float32)
            z[:, cfg.labels.index("on")] = 5.0
            return z

    _, y, z = build_training_set([tone] * 4, real, [tone] * 2, synth, [], cfg.labels, cfg,
                                 np.random.default_rng(0), Teacher())
    unknown = cfg.labels.index(ds.UNKNOWN)
    assert (y == unknown).sum() > 0
    assert (z[y == unknown].argmax(axis=1) == unknown).all()
    words = (y != unknown) & (y != cfg.labels.index(ds.SILENCE))
    assert words.sum() > 0 and (z[words].argmax(axis=1) == cfg.labels.index("on")).all()
