"""End to end on a tiny subset: hark train (1 epoch) -> export -> eval, through the CLI."""
import json

import numpy as np
import pytest

from hark.cli import main


TRAIN_STDOUT = []


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory):
    from contextlib import redirect_stdout
    from io import StringIO
    run = tmp_path_factory.mktemp("run")
    out = StringIO()
    with redirect_stdout(out):
        assert main(["train", "--data", str(shared_data), "--out", str(run), "--epochs", "2",
                     "--max-per-word", "6", "--views", "1", "--family", "tcn",
                     "--average-epochs", "2", "--dc-prob", "0.2", "--dc-silence-prob", "0.4",
                     "--n-mfcc", "13"]) == 0
    TRAIN_STDOUT.append(out.getvalue())
    assert main(["export", str(run), "--out", str(run / "tiny.hark")]) == 0
    return run


def test_train_shows_time_left_and_the_files_it_wrote(exported):
    lines = TRAIN_STDOUT[0].splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("s/epoch" in line for line in epochs)
    assert epochs[0].endswith("left)") and epochs[1].endswith("0 s left)")
    averaged = [line for line in lines if line.startswith("mean of the last 2 epochs' weights")]
    assert len(averaged) == 1 and "(best epoch " in averaged[0]
    wrote = next(line for line in lines if line.startswith("wrote in "))
    for name in ("model.keras", "config.json", "metrics.json", "history.png"):
        assert name in wrote


def test_weight_average_is_the_mean_in_each_arrays_dtype():
    from hark.training.train import add_weights, mean_weights
    epochs = [[np.full((2, 2), v, np.float32), np.array([v], np.uint32)] for v in (1, 2, 6)]
    summed = None
    for weights in epochs:
        summed = add_weights(summed, weights)
    mean = mean_weights(summed, 3)
    assert mean[0].dtype == np.float32 and np.all(mean[0] == 3.0)
    assert mean[1].dtype == np.uint32 and mean[1][0] == 6   # a seed state: the latest, not a mean
    assert np.all(epochs[0][0] == 1)                         # the epochs' arrays are not changed


def test_run_directory_has_everything(exported):
    for name in ("model.keras", "config.json", "history.json", "metrics.json", "history.png",
                 "confusion_float.png", "tiny.hark", "tiny.tflite"):
        assert (exported / name).stat().st_size > 0, name
    config = json.loads((exported / "config.json").read_text())
    # --n-mfcc 13: the spec, the normalisation and the blob's model input follow it
    assert config["family"] == "tcn" and config["spec"]["n_mfcc"] == 13
    assert len(config["normalisation"]["mean"]) == 13
    from hark.training import blob
    meta, _ = blob.read_blob(exported / "tiny.hark")
    assert meta["model"]["input"]["shape"][-1] == 13
    assert (config["dc_prob"], config["dc_silence_prob"]) == (0.2, 0.4)  # augmentation recorded
    assert config["average_epochs"] == 2
    assert 0 <= json.loads((exported / "history.json").read_text())["averaged_val_accuracy"] <= 1


def test_eval_json_and_plot(exported, shared_data, capsys):
    out = exported / "eval.json"
    assert main(["eval", "--model", str(exported / "tiny.hark"), "--data", str(shared_data),
                 "--max-per-word", "2", "--json", str(out), "--plot",
                 str(exported / "cm.png")]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) >= {"accuracy", "n", "per_class", "confusion", "labels"}
    assert metrics["n"] == np.sum(metrics["confusion"])
    assert {"on", "off", "_unknown_", "_silence_"} <= set(metrics["per_class"])
    assert (exported / "cm.png").stat().st_size > 1000
    # every _unknown_ clip is in exactly one word's row, and the rejected ones are the diagonal
    k = metrics["labels"].index("_unknown_")
    rows = metrics["unknown_words"]
    assert sum(r["n"] for r in rows) == np.sum(metrics["confusion"][k])
    assert round(sum(r["rejected"] * r["n"] for r in rows)) == metrics["confusion"][k][k]
    assert [r["rejected"] for r in rows] == sorted(r["rejected"] for r in rows)
    out = capsys.readouterr().out
    assert "confusion" in out and "unknown words, least rejected first" in out


def test_unknown_words_per_word():
    from hark.training.report import unknown_words

    labels = ["_silence_", "_unknown_", "on", "off"]
    words = ["dog", "dog", "dog", "wow", "on"]
    rows = unknown_words(words, [1, 1, 1, 1, 2], [3, 1, 3, 1, 1], labels)
    assert rows == [{"word": "dog", "n": 3, "rejected": 1 / 3, "heard_as": {"off": 2}},
                    {"word": "wow", "n": 1, "rejected": 1.0, "heard_as": {}}]


def _float_and_int8(keras_path, tflite_path, blob_path, x):
    """Float probabilities and dequantised int8 (TFLite Micro) probabilities on features x."""
    import keras

    from hark.training import blob, convert, evaluate
    from hark.training.features import Normalisation

    meta, _ = blob.read_blob(blob_path)
    xn = Normalisation.from_dict(meta["features"]["normalisation"]).apply(x)
    p_float = keras.models.load_model(keras_path).predict(xn, verbose=0)
    q = meta["model"]["input"]
    y8 = convert.run_tflm(tflite_path.read_bytes(), evaluate.quantise(xn, q["scale"], q["zero_point"]))
    out = meta["model"]["output"]
    return p_float, (y8.astype(np.float32) - out["zero_point"]) * out["scale"]


def test_int8_probabilities_follow_float(exported):
    """Even for a barely trained model, int8 scores stay within a few steps of float."""
    x = np.load(exported / "test_features.npz")["x"]
    p_float, p_int8 = _float_and_int8(exported / "model.keras", exported / "tiny.tflite",
                                      exported / "tiny.hark", x)
    assert np.abs(p_float - p_int8).mean() < 0.02


def test_logit_offset_is_folded_into_the_run_s_export(exported, tmp_path, capsys):
    """--logit-offset moves one row of the dense layer's int32 bias by offset/scale and nothing
    else (offset 0 gives the same bytes); the float model beside the blob gets the same offset,
    the run's own stays as trained; offsets that would clip or name no class are refused."""
    import keras

    from hark.training import blob, graph
    from hark.training.export import MAX_OFFSET_STEPS, logit_step, offset_logits
    from hark.training.features import Normalisation
    from hark.training.models import logits_of

    tflite = (exported / "tiny.tflite").read_bytes()
    labels = blob.read_blob(exported / "tiny.hark")[0]["labels"]
    assert offset_logits(tflite, labels, {"_unknown_": 0.0}) == tflite
    offset = round(8 * logit_step(tflite), 4)          # 8 int8 steps of the logits
    out = tmp_path / "offset.hark"
    assert main(["export", str(exported), "--out", str(out),
                 "--logit-offset", f"_unknown_={offset}"]) == 0
    recipe = json.loads(out.with_suffix(".train.json").read_text())
    assert recipe["logit_offsets"] == {"_unknown_": offset}
    _, before = graph.from_tflite(tflite)
    _, after = graph.from_tflite(out.with_suffix(".tflite").read_bytes())
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert len(changed) == 1                          # the dense layer's bias
    delta = after[changed[0]].astype(np.int64) - before[changed[0]]
    k = labels.index("_unknown_")
    assert np.count_nonzero(delta) == 1 and delta[k] > 0
    xn = Normalisation.from_dict(recipe["config"]["normalisation"]).apply(
        np.load(exported / "test_features.npz")["x"][:16])
    logits = [logits_of(m).predict(xn, verbose=0) for m in
              (keras.models.load_model(exported / "model.keras"),
               keras.models.load_model(out.with_suffix(".keras")))]
    assert np.allclose(logits[1] - logits[0], np.eye(len(labels))[k] * offset, atol=1e-4)
    capsys.readouterr()
    too_far = round(1.5 * MAX_OFFSET_STEPS * logit_step(tflite), 3)
    assert main(["export", str(exported), "--out", str(out),
                 "--logit-offset", f"_unknown_={too_far}"]) == 1
    assert "it would clip" in capsys.readouterr().err
    assert main(["export", str(exported), "--logit-offset", "_unknown_=0.1"]) == 1
    assert "must stay as trained" in capsys.readouterr().err
    assert main(["export", str(exported), "--out", str(out), "--logit-offset", "unknown=1"]) == 1
    assert "which the model does not output" in capsys.readouterr().err
    assert main(["export", str(exported), "--out", str(out), "--logit-offset", "_unknown_"]) == 1
    assert "give a label and a number, e.g. _unknown_=1" in capsys.readouterr().err
    assert main(["export", "--tflite", str(out.with_suffix(".tflite")), "--out", str(out),
                 "--logit-offset", "_unknown_=1"]) == 1
    assert "export the run again" in capsys.readouterr().err


def test_logit_offset_moves_decisions_only_towards_its_class(shared_data):
    """On a trained model and real clips, TFLite Micro's probability of the offset class rises
    or stays on every clip, and a clip's label changes only to that class."""
    from hark import MODELS_DIR
    from hark.training import blob, convert, dataset, evaluate, features
    from hark.training.export import offset_logits
    from hark.training.features import Normalisation

    meta, _ = blob.read_blob(MODELS_DIR / "default.hark")
    tflite = (MODELS_DIR / "default.tflite").read_bytes()
    audio, _, _ = dataset.load_clips(dataset.load_dataset(shared_data).split("test")[::3])
    q = meta["model"]["input"]
    xn = Normalisation.from_dict(meta["features"]["normalisation"]).apply(
        features.batch_features(audio))
    x = evaluate.quantise(xn, q["scale"], q["zero_point"])
    k = meta["labels"].index("_unknown_")
    p0 = convert.run_tflm(tflite, x)
    p1 = convert.run_tflm(offset_logits(tflite, meta["labels"], {"_unknown_": 1.0}), x)
    assert np.all(p1[:, k] >= p0[:, k]) and np.mean(p1[:, k] > p0[:, k]) > 0.1
    moved = p0.argmax(1) != p1.argmax(1)
    assert np.all(p1.argmax(1)[moved] == k)


def test_shipped_int8_model_agrees_with_float(shared_data):
    """The shipped int8 model picks the float model's label on real held-out clips."""
    from hark import MODELS_DIR
    from hark.training import dataset, features

    d = dataset.load_dataset(shared_data)
    audio, _, _ = dataset.load_clips(d.split("test")[::2])
    x = features.batch_features(audio)
    p_float, p_int8 = _float_and_int8(MODELS_DIR / "default.keras", MODELS_DIR / "default.tflite",
                                      MODELS_DIR / "default.hark", x)
    assert (p_float.argmax(1) == p_int8.argmax(1)).mean() >= 0.95
    assert np.abs(p_float - p_int8).mean() < 0.02


def test_train_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 1
    assert "not a training run" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--n-mfcc", "41"]) == 1
    assert "--n-mfcc must be in 1..40" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["default", "esp32", "wide"])
def test_shipped_models_carry_what_the_makefile_exports(name):
    """A shipped commands model's blob threshold is its Makefile NAME_DETECTOR and the logit
    offsets its .train.json records are NAME_OFFSET (`make train-NAME` reproduces both); the
    offsets are in the .tflite, so a `make models` repack keeps them."""
    from conftest import REPO, make_variable
    from hark.training import blob
    from hark.commands.export import label_thresholds

    meta, _ = blob.read_blob(REPO / "models" / f"{name}.hark")
    detector = make_variable(f"{name.upper()}_DETECTOR")
    assert detector[0] == "--threshold" and meta["detector"]["threshold"] == pytest.approx(
        float(detector[1]))
    offsets = label_thresholds(make_variable(f"{name.upper()}_OFFSET")[1::2])
    recipe = json.loads((REPO / "models" / f"{name}.train.json").read_text())
    assert recipe.get("logit_offsets", {}) == offsets
