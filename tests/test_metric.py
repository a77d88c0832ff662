"""The metric-learning objective for enrolled words (training/metric.py, issue 16): which words the
episodes draw, the episodes themselves, the loss, and `hark train --embedding-loss proto`."""
import json
from pathlib import Path

import numpy as np
import pytest

from hark.training import metric
from hark.training.dataset import Clip
from hark.training.features import DEFAULT_SPEC


def _clips(counts):
    return [Clip(Path(f"{w}/s{i}_nohash_0.wav"), w, "_unknown_", "train")
            for w, n in counts.items() for i in range(n)]


def test_pool_leaves_out_held_out_words_and_words_too_scarce_for_an_episode():
    pool = metric.pool_clips(_clips({"marvin": 9, "apple": 3, "ball": 2, "yes": 50}),
                             held_out={"marvin"}, per_word=10, shots=2)
    assert sorted(pool) == ["apple", "yes"]     # ball: 2 clips, no query beside 2 shots
    assert len(pool["yes"]) == 10 and len(set(c.path for c in pool["yes"])) == 10
    assert "marvin" in metric.HELD_OUT and "forward" in metric.HELD_OUT


def test_episode_draws_distinct_recordings_of_distinct_words_word_major():
    rng = np.random.default_rng(0)
    audio = {w: [rng.normal(0, 0.1, 16000).astype(np.float32) for _ in range(n)]
             for w, n in (("a", 3), ("b", 4), ("c", 5))}
    pool = metric.EpisodePool(audio, [np.zeros(32000, np.float32)], DEFAULT_SPEC, views=2,
                              augment_config=metric.aug.AugmentConfig(), rng=rng)
    assert pool.x.shape == (2 * 12, *DEFAULT_SPEC.shape) and len(pool) == 3
    for _ in range(20):
        idx = pool.episode(3, 2, rng).reshape(3, 3)
        clip = idx // 2
        owner = [[w for w in range(3) if c in pool.clips_of[w]] for c in clip.ravel()]
        words = np.array(owner).reshape(3, 3)
        assert (words == words[:, :1]).all() and len(set(words[:, 0])) == 3
        assert all(len(set(row)) == 3 for row in clip)      # support and query: other clips


def test_proto_loss_is_low_when_queries_sit_on_their_prototypes():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (5, 8)).astype(np.float32)
    tight = np.repeat(centres[:, None], 3, axis=1) + rng.normal(0, 0.01, (5, 3, 8))
    shuffled = tight.reshape(15, 8)[rng.permutation(15)]
    scale = tf.constant(np.log(10.0), tf.float32)
    good = float(metric.proto_loss(tight.reshape(15, 8).astype(np.float32), 5, 2, scale))
    bad = float(metric.proto_loss(shuffled.astype(np.float32), 5, 2, scale))
    assert good < 0.2 < np.log(5) * 0.5 < bad


def test_trainer_pulls_the_embedding_of_a_word_together():
    """Steps on four words of noisy features: clips of a word move together in the embedding
    (the input of the last dense layer) relative to clips of other words."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = keras.Input(DEFAULT_SPEC.shape)
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(hidden)))
    pool = metric.EpisodePool.__new__(metric.EpisodePool)
    base = rng.normal(0, 1, (4, 1, DEFAULT_SPEC.shape[1]))
    pool.x = np.concatenate([base[w] + rng.normal(0, 1, (6, *DEFAULT_SPEC.shape))
                             for w in range(4)]).astype(np.float32)
    pool.words, pool.views = ["a", "b", "c", "d"], 1
    pool.clips_of = [list(range(6 * w, 6 * w + 6)) for w in range(4)]
    embed = keras.Model(model.inputs[0], metric.embedding_output(model))
    same = np.equal.outer(np.arange(24) // 6, np.arange(24) // 6)

    def separation():
        """Mean L1 distance between clips of different words over that within a word."""
        e = embed(pool.x).numpy()
        d = np.abs(e[:, None] - e[None]).sum(-1)
        return d[~same].mean() / d[same & ~np.eye(24, dtype=bool)].mean()

    before = separation()
    trainer = metric.Trainer(model, pool, 3e-3, weight=1.0, way=4, shots=2)
    x = rng.normal(0, 1, (40, *DEFAULT_SPEC.shape)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    for _ in range(15):
        trainer.epoch(x, y, 20, rng)
    print(before, separation())
    assert separation() > 1.5 * before


def test_embedding_flags_are_checked_before_work(tmp_path, capsys):
    from hark.cli import main

    assert main(["train", "--data", str(tmp_path), "--embedding-synth", str(tmp_path)]) == 1
    assert "--embedding-loss proto" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--embedding-loss", "proto",
                 "--teacher", "oww-embedding"]) == 1
    assert "leave out --teacher" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--embedding-loss", "proto",
                 "--mixup", "0.3"]) == 1     # episodes are not mixed: say so, not ignore it
    assert "--mixup" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--mixup", "-1"]) == 1
    assert "--mixup" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--embedding-loss", "proto",
                 "--embedding-way", "1"]) == 1
    assert "--embedding-way 1 must be >= 2" in capsys.readouterr().err


def test_unseen_words_leave_the_labels():
    from hark.training.train import TrainConfig

    cfg = TrainConfig(data=[], unseen_words=["left", "go"])
    assert "left" not in cfg.labels and "go" not in cfg.labels and "right" in cfg.labels
    assert len(cfg.labels) == 10


@pytest.mark.slow
def test_train_with_proto_episodes(shared_data, tmp_path, capsys):
    """Through the CLI on a tiny subset: the episodes draw no held-out word and no unseen word,
    the history has the episode loss, and the exported blob marks the embedding."""
    from hark.cli import main
    from hark.training.blob import read_blob

    out = tmp_path / "run"
    rc = main(["train", "--data", str(shared_data), "--out", str(out), "--epochs", "2",
               "--max-per-word", "6", "--width", "8", "--views", "1", "--embedding-loss", "proto",
               "--embedding-way", "5", "--unseen-words", "left"])
    assert rc == 0
    printed = capsys.readouterr().out
    words = int(printed.split("episode pool: ")[1].split()[0])
    pooled = {p.name for p in shared_data.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert words == len(pooled - set(metric.HELD_OUT) - {"left"})
    history = json.loads((out / "history.json").read_text())
    assert len(history["embedding_loss"]) == 2 and len(history["val_accuracy"]) == 2
    assert main(["export", str(out), "--out", str(out / "m.hark")]) == 0
    meta = read_blob(out / "m.hark")[0]
    assert meta["model"]["embedding"]["size"] == 8 and "left" not in meta["labels"]
