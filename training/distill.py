"""Distillation from the speech teacher (training/teacher.py) into hark's small students.

1. The teacher head is trained on the run's own real training clips (augmented, scarce words
   repeated), so a cross-validation fold never teaches the student a speaker it tests.
2. Every augmented training example gets the teacher's soft label softmax(z / T); the
   student learns from a mix of the hard label and that soft label (Hinton et al. 2015).
3. Optionally, extra audio that only the teacher labels: overlapping word pairs, words half
   out of the window, word fragments in noise, words at another pitch and tempo. These
   are the situations a streaming detector meets between clean words.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment as aug
from . import dataset as ds
from .features import fit_clip
from .teacher import TEACHER_NAME, SpeechEmbedding, cache_dir, fit_head, soft_targets

# Copies per real clip in the teacher's training set: the scarce words need many views.
TEACHER_REPEATS = {"on": 40, "off": 40, ds.UNKNOWN: 6}


@dataclass
class Teacher:
    """A trained head on the frozen embedding; labels audio with logits."""
    embedding: SpeechEmbedding
    head: object
    metrics: dict

    def logits(self, clips) -> np.ndarray:
        emb = self.embedding.cached(np.stack(clips))
        return self.head.predict(emb, batch_size=512, verbose=0)


def _teacher_set(real_audio, real_clips, noise, labels, rng, shift_ms):
    config = aug.AugmentConfig(shift_ms=shift_ms)
    clips, targets = [], []
    for y, c in zip(real_audio, real_clips):
        repeats = TEACHER_REPEATS.get(c.word, TEACHER_REPEATS.get(c.label, 1))
        for _ in range(repeats):
            clips.append(aug.augment(fit_clip(y), rng, noise, config))
            targets.append(labels.index(c.label))
    n_silence = aug.silence_count(len(clips), labels) // 2
    clips += [aug.silence_clip(rng, noise) for _ in range(n_silence)]
    targets += [labels.index(ds.SILENCE)] * n_silence
    return clips, np.asarray(targets, np.int64)


def synthetic_only(real_clips, synth_audio, synth_clips, labels):
    """The synthetic clips of labels no real clip has (a wake phrase): the teacher must learn
    them too, or its soft labels would teach the student that the phrase is another word."""
    real = {c.label for c in real_clips}
    keep = [i for i, c in enumerate(synth_clips) if c.label in labels and c.label not in real
            and c.label != ds.SILENCE]
    return [synth_audio[i] for i in keep], [synth_clips[i] for i in keep]


def train_teacher(real_audio, real_clips, val_audio, val_clips, noise, labels, seed: int,
                  shift_ms: float = 150.0, epochs: int = 30) -> Teacher:
    """Train (or load from the cache: same clips, labels and seed) the teacher head.
    real_audio/real_clips may include synthetic clips of labels real speech lacks
    (synthetic_only)."""
    import keras

    names = sorted(str(c.path) for c in real_clips)
    key = hashlib.sha1(json.dumps([names, labels, seed, shift_ms, epochs]).encode()).hexdigest()
    folder = cache_dir() / f"head-{key[:16]}"
    embedding = SpeechEmbedding()
    if (folder / "head.keras").exists():
        head = keras.saving.load_model(folder / "head.keras")
        return Teacher(embedding, head, json.loads((folder / "metrics.json").read_text()))
    rng = np.random.default_rng(seed)
    clips, targets = _teacher_set(real_audio, real_clips, noise, labels, rng, shift_ms)
    x = np.concatenate([embedding.cached(np.stack(clips[i:i + 2048]))
                        for i in range(0, len(clips), 2048)])
    head = fit_head(x, targets, len(labels), seed, epochs)
    metrics = {"teacher": TEACHER_NAME, "train_examples": int(len(targets))}
    if val_audio:
        val_x = embedding.cached(np.stack([fit_clip(y) for y in val_audio]))
        val_y = np.asarray([labels.index(c.label) for c in val_clips], np.int64)
        pred = head.predict(val_x, batch_size=512, verbose=0).argmax(axis=1)
        metrics["val_accuracy"] = float((pred == val_y).mean())
    folder.mkdir(parents=True, exist_ok=True)
    head.save(folder / "head.keras")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return Teacher(embedding, head, metrics)


def judge_synthetic(teacher: Teacher, audio, clips, labels, min_prob: float, judged=None):
    """Keep the synthetic clips the teacher hears as their own label with at least min_prob
    (it hears most MBROLA voices' "off" as "up": such clips teach the student a lie). judged:
    the labels it rules on (None: all); clips of other labels are kept unheard.
    Returns (audio, clips, {word: [kept, total]})."""
    ruled = [i for i, c in enumerate(clips) if judged is None or c.label in judged]
    keep = np.ones(len(clips), bool)
    if ruled:
        probs = soft_targets(teacher.logits([fit_clip(audio[i]) for i in ruled]), 1.0)
        own = probs[np.arange(len(ruled)), [labels.index(clips[i].label) for i in ruled]]
        keep[ruled] = own >= min_prob
    report = {}
    for c, k in zip(clips, keep):
        kept_total = report.setdefault(c.word if c.label != ds.UNKNOWN else ds.UNKNOWN, [0, 0])
        kept_total[0] += int(k)
        kept_total[1] += 1
    return ([y for y, k in zip(audio, keep) if k], [c for c, k in zip(clips, keep) if k],
            report)


def extra_clip(kind: str, sources, rng, noise) -> np.ndarray:
    """One teacher-only clip. `sources` are 1 s word clips to draw from."""
    def pick():
        return fit_clip(sources[rng.integers(len(sources))])

    n = 16000
    if kind == "pair":          # the end of one word running into the next
        a, b = pick(), pick()
        _, end_a = aug.active_region(a)
        start_b, _ = aug.active_region(b)
        offset = int(rng.uniform(0.25, 0.75) * n)
        y = aug.time_shift(a, offset - end_a) + aug.time_shift(b, offset - start_b + int(
            rng.uniform(-0.1, 0.15) * n))
    elif kind == "edge":        # a word half in, half out of the window
        y = pick()
        start, end = aug.active_region(y)
        length = end - start
        if rng.random() < 0.5:
            y = aug.time_shift(y, n - start - int(rng.uniform(0.3, 0.7) * length))
        else:
            y = aug.time_shift(y, -start - int(rng.uniform(0.3, 0.7) * length))
    elif kind == "fragment":    # a piece of a word in noise
        w = pick()
        start, end = aug.active_region(w)
        length = int(rng.uniform(0.1, 0.35) * n)
        a = int(rng.integers(start, max(start + 1, end - length)))
        piece = w[a:a + length] * np.hanning(len(w[a:a + length]))
        y = np.zeros(n, np.float32)
        at = int(rng.integers(0, n - len(piece)))
        y[at:at + len(piece)] = piece
    elif kind == "warp":        # pitch and tempo together, as a resampled recording
        from scipy.signal import resample
        w = pick()
        factor = rng.uniform(0.8, 1.25)
        y = fit_clip(resample(w, int(len(w) * factor)).astype(np.float32))
    else:
        raise ValueError(kind)
    return aug.augment(y.astype(np.float32), rng, noise, aug.AugmentConfig(shift_ms=0))


EXTRA_KINDS = ("pair", "edge", "fragment", "warp")


def distill_loss(n_labels: int, temperature: float, soft_weight: float):
    """Loss on packed targets [one-hot | soft | hard weight] against student logits:
    hard-weighted cross-entropy + soft_weight * T^2 * cross-entropy at temperature T."""
    from keras import ops

    def loss(y, logits):
        hard, soft, w = y[:, :n_labels], y[:, n_labels:2 * n_labels], y[:, 2 * n_labels]
        log_p = ops.log_softmax(logits, axis=-1)
        log_p_t = ops.log_softmax(logits / temperature, axis=-1)
        ce_hard = -ops.sum(hard * log_p, axis=-1)
        ce_soft = -ops.sum(soft * log_p_t, axis=-1)
        return (1 - soft_weight) * w * ce_hard + soft_weight * temperature ** 2 * ce_soft
    return loss


def packed_accuracy(n_labels: int):
    from keras import ops

    def accuracy(y, logits):
        target = ops.argmax(y[:, :n_labels] + 1e-3 * y[:, n_labels:2 * n_labels], axis=-1)
        return ops.mean(ops.cast(ops.equal(target, ops.argmax(logits, axis=-1)), "float32"))
    return accuracy


def correct_soft(soft: np.ndarray, targets, tops=None) -> np.ndarray:
    """Where the teacher's top class is not a clip's own label, swap the two probabilities:
    the label wins and the teacher's sense of what it sounds like (off near up) stays. The
    teacher hears many real "off" clips as "up"; copied as they are, such soft labels teach
    the student the teacher's error. `tops`: the only top classes to correct (None: any).
    Teacher-only clips (target -1) keep their labels."""
    soft = soft.copy()
    rows = np.flatnonzero(np.asarray(targets) >= 0)
    own = np.asarray(targets)[rows]
    top = soft[rows].argmax(axis=1)
    wrong = (top != own) & (True if tops is None else np.isin(top, tops))
    rows, own, top = rows[wrong], own[wrong], top[wrong]
    soft[rows, own], soft[rows, top] = soft[rows, top], soft[rows, own]
    return soft


def pack(targets, soft, n_labels: int, hard_weight=None) -> np.ndarray:
    """Targets for distill_loss. A target of -1 (a teacher-only clip) has no hard label:
    its one-hot row is zero and, unless hard_weight says otherwise, its weight 0."""
    targets = np.asarray(targets)
    onehot = np.eye(n_labels, dtype=np.float32)[np.maximum(targets, 0)] * (targets >= 0)[:, None]
    w = (targets >= 0) if hard_weight is None else hard_weight
    w = np.asarray(w, np.float32)[:, None]
    return np.concatenate([onehot, soft.astype(np.float32), w], axis=1)
