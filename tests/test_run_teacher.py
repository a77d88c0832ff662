"""hark's own runs as a teacher (`hark train --teacher-runs`): checked before any work,
one fold's runs teach that fold's student, the ensemble is the mean of its members' logits."""
import json

import numpy as np
import pytest

from hark.training import dataset as ds
from hark.training.features import DEFAULT_SPEC


def fake_run(folder, **config):
    folder.mkdir(parents=True)
    base = {"labels": list(ds.LABELS), "spec": DEFAULT_SPEC.to_dict(), "cv_folds": 0,
            "cv_fold": 0}
    (folder / "config.json").write_text(json.dumps(dict(base, **config)))
    (folder / "model.keras").write_bytes(b"")
    return folder


@pytest.mark.parametrize("config, args, message", [
    ({"cv_folds": 3, "cv_fold": 0}, ["--cv-folds", "3", "--cv-fold", "1"],
     "must not have trained on the speakers its student is tested on"),
    ({"cv_folds": 3, "cv_fold": 0}, [], "teach a full-data student with full-data runs"),
    ({"labels": ["_silence_", "_unknown_", "hey_hark"]}, [], "are not the student's"),
    ({"spec": dict(DEFAULT_SPEC.to_dict(), fmax=8000.0)}, [], "features differ"),
])
def test_a_run_that_cannot_teach_is_refused_before_work(tmp_path, capsys, config, args,
                                                        message):
    from hark.cli import main

    run = fake_run(tmp_path / "teacher", **config)
    assert main(["train", "--data", str(tmp_path), "--teacher-runs", str(run), *args]) == 1
    assert message in capsys.readouterr().err


def test_teacher_runs_flags_are_checked(tmp_path, capsys):
    from hark.cli import main

    run = fake_run(tmp_path / "teacher")
    assert main(["train", "--data", str(tmp_path), "--teacher-runs", str(tmp_path / "none")]) == 1
    assert "not a finished `hark train` run" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--teacher-runs", str(run),
                 "--teacher", "oww-embedding"]) == 1
    assert "choose one" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--teacher-runs", str(run),
                 "--soft-weight", "0"]) == 1
    assert "would ignore them" in capsys.readouterr().err


def test_word_parts_share_unknown_and_go_with_the_speech_teacher(tmp_path, capsys):
    """Onsets and tails share the _unknown_ examples. The speech teacher labels source clips,
    and a word part keeps a rule _unknown_ label under it (tests/test_distill.py), so the two
    go together: the run gets past the flag checks to the (here empty) data."""
    from hark.cli import main

    assert main(["train", "--data", str(tmp_path), "--onset-unknown", "0.6",
                 "--tail-unknown", "0.5"]) == 1
    assert "together at most 1" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--tail-unknown", "0.5",
                 "--teacher", "oww-embedding"]) == 1
    assert "no clips found" in capsys.readouterr().err


@pytest.mark.slow
def test_mixup_stops_after_mixup_epochs(shared_data, tmp_path, monkeypatch):
    from hark.cli import main
    from hark.training import augment

    mixed_epochs, mixup = [], augment.mixup
    monkeypatch.setattr(augment, "mixup", lambda *a, **k: mixed_epochs.append(1) or mixup(*a, **k))
    assert main(["train", "--data", str(shared_data), "--epochs", "3", "--max-per-word", "4",
                 "--width", "8", "--mixup", "0.3", "--mixup-epochs", "2",
                 "--out", str(tmp_path / "run")]) == 0
    assert len(mixed_epochs) == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mixup_epochs"] == 2


@pytest.mark.slow
def test_a_folds_runs_teach_that_folds_student(shared_data, tmp_path):
    from hark.cli import main
    from hark.training.run_teacher import RunEnsemble

    common = ["--data", str(shared_data), "--epochs", "1", "--max-per-word", "6",
              "--width", "8", "--cv-folds", "3", "--cv-fold", "2"]
    for seed in (0, 1):     # seed 1 with mixup: hard labels as distributions
        assert main(["train", *common, "--seed", str(seed), *(["--mixup", "0.2"] * seed),
                     "--out", str(tmp_path / f"teacher{seed}_fold2")]) == 0
    mixed = json.loads((tmp_path / "teacher1_fold2" / "history.json").read_text())
    assert 0 < mixed["accuracy"][0] <= 1 and 0 < mixed["val_accuracy"][0] <= 1
    out = tmp_path / "student"      # mixup on packed distillation targets, silence unmixed,
    # words behind another word's end
    assert main(["train", *common, "--out", str(out), "--time-masks", "2", "--tail-unknown",
                 "0.3", "--mixup", "0.4", "--mixup-keep-silence", "--lead-in-prob", "0.5",
                 "--teacher-runs", str(tmp_path / "teacher0_fold{fold}"),
                 str(tmp_path / "teacher1_fold{fold}")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["float_test"]
    runs = [str(tmp_path / "teacher0_fold2"), str(tmp_path / "teacher1_fold2")]
    assert metrics["teacher"]["runs"] == runs
    config = json.loads((out / "config.json").read_text())
    assert config["teacher_runs"] == runs and config["time_masks"] == 2
    assert config["tail_unknown"] == 0.3 and config["mixup"] == 0.4
    assert config["mixup_keep_silence"] is True and config["lead_in_prob"] == 0.5
    assert metrics["teacher"]["test"]["n"] == metrics["n"]

    x = np.load(out / "test_features.npz")["x"][:20]
    members = [RunEnsemble([r]).logits(x) for r in runs]
    assert not np.allclose(members[0], members[1])
    np.testing.assert_allclose(RunEnsemble(runs).logits(x), (members[0] + members[1]) / 2,
                               rtol=1e-5, atol=1e-5)
