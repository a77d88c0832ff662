"""Training: real and synthetic Speech Commands-layout folders -> a float Keras model.

A run directory gets config.json, history.json, metrics.json, model.keras and plots.
Scarce classes are balanced by oversampling with augmentation; synthetic clips fill a class
but real clips keep at least `real_share` of it (drowning six real "on" clips among 600
synthetic ones makes real-speaker recall worse, see REFERENCE.md).

Wake-word runs (`wake="hey hark"`) have the labels [_silence_, _unknown_, hey_hark]: the
positives come only from synthetic folders (the phrase's folder), every real word is
`_unknown_`. Real data has no wake-word clips to validate on, so synthetic clips are split
by voice (a hash of the voice name, as Speech Commands splits speakers) into 80/10/10 %
train/validation/test.

Assistant runs (`wake` and `commands`) train one model for the `wake+command` grammar:
labels [_silence_, _unknown_, *commands, hey_hark]. The commands and `_unknown_` are
balanced as in a commands-only run; the wake phrase is one more class of that size from its
synthetic clips, which alone are split by voice (the other synthetic clips all train).
"""
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import augment as aug
from . import dataset as ds
from . import rooms
from .features import DEFAULT_SPEC, FeatureSpec, Normalisation, batch_features, fit_clip
from .metric import HELD_OUT


@dataclass
class TrainConfig:
    data: list                          # real Speech Commands-layout folders
    synth: list = field(default_factory=list)  # synthetic folders (hark synth)
    out: str = "runs/kws"
    family: str = "tcn"
    width: int = 0                      # tcn channels; 0 = family default
    labels: list = field(default_factory=lambda: list(ds.LABELS))
    epochs: int = 40
    average_epochs: int = 0             # keep the mean of the last N epochs' weights (0: the best
                                        # validation epoch's)
    batch_size: int = 100
    learning_rate: float = 3e-3
    seed: int = 0
    views: int = 3                      # augmented copies precomputed per example
    class_size: int = 0                 # examples per class per view; 0 = median real count
    real_share: float = 0.3             # minimum share of real clips within a class
    label_real_share: dict = field(default_factory=dict)  # {label: its own real_share}
    synth_ratio: float = 1.0            # fraction of available synthetic clips used
    max_per_word: int = 0               # cap clips per word (tiny smoke runs); 0 = all
    exclude_words: list = field(default_factory=list)  # real words held out entirely
    drop_engines: list = field(default_factory=list)  # TTS engines whose clips are left out
    wake: str = ""                      # wake phrase: labels become wake_labels(wake, commands)
    commands: list = field(default_factory=list)  # with wake: the commands after the wake word
    shift_ms: float = 100.0             # time-shift range of augmentation (+-ms)
    unknown_weight: float = 1.0         # _unknown_ examples per view, in class sizes
    mic_prob: float = 0.0               # chance of a random microphone response per example
    speed_prob: float = 0.0             # chance of a speed change (0.9-1.1) per example
    formant_prob: float = 0.0           # chance of a vocal-tract-length warp per example
    room_prob: float = 0.0              # chance of a simulated room 1-3 m away per example
    time_masks: int = 0                 # SpecAugment time masks per training example (0: none)
    mixup: float = 0.0                  # mixup's Beta(alpha, alpha) per epoch (0: none)
    mixup_epochs: int = 0               # with mixup: mix only the first N epochs (0: all)
    mixup_keep_silence: bool = False    # with mixup: _silence_ examples left unmixed
    onset_unknown: float = 0.0          # share of _unknown_ examples that are a word's onset only
    tail_unknown: float = 0.0           # share of _unknown_ examples that are a word's tail only
    lead_in_prob: float = 0.0           # chance of another word's end before a word example
    dc_prob: float = 0.1                # chance of a random DC offset per example (speech too)
    dc_silence_prob: float = 0.3        # share of _silence_ examples on a DC offset or step
    teacher: str = ""                   # "oww-embedding": distil from the speech teacher
    temperature: float = 2.0            # softening of the teacher's labels
    soft_weight: float = 0.5            # share of the loss on the teacher's labels
    teacher_extra: int = 0              # clips per view labelled only by the teacher
    teacher_filter: float = 0.0         # drop synthetic clips the teacher doubts (min prob)
    teacher_filter_labels: list = field(default_factory=list)  # judge only these labels ([]: all)
    teacher_correct: str = ""           # "all" / "words": swap label and teacher's wrong top class
    teacher_runs: list = field(default_factory=list)  # hark's own runs as the teacher (run_teacher.py)
    cv_folds: int = 0                   # speaker-grouped cross-validation of scarce words:
    cv_fold: int = 0                    # this fold's speakers are the test set
    embedding_loss: str = ""            # "proto": metric learning on the embedding (metric.py)
    embedding_weight: float = 0.5       # its share beside the classifier's cross-entropy
    embedding_way: int = 20             # words per episode
    embedding_shots: int = 2            # clips per prototype (one more is the query)
    embedding_per_word: int = 24        # at most this many clips of a word in the pool
    embedding_synth: list = field(default_factory=list)  # folders for the episodes only
    embedding_holdout: list = field(default_factory=lambda: list(HELD_OUT))  # never in episodes
    unseen_words: list = field(default_factory=list)  # ablation: out of the labels and all data
    spec: dict = field(default_factory=DEFAULT_SPEC.to_dict)

    def __post_init__(self):
        if self.wake:
            self.labels = wake_labels(self.wake, self.commands)
        self.labels = [l for l in self.labels if l not in self.unseen_words]

    @property
    def wake_only(self) -> bool:
        return bool(self.wake) and not self.commands


def wake_labels(phrase: str, commands=()) -> list:
    """The labels of a wake-word model (and of the commands that follow it); the phrase's
    label is its `hark synth` folder name."""
    from .synth import label_for
    return [ds.SILENCE, ds.UNKNOWN, *commands, label_for(phrase)]


def voice_split(path) -> str:
    """train/validation/test (80/10/10 %) of a synthetic clip, fixed by its voice name
    (`<voice>_nohash_<n>.wav`), so validation voices are never trained on."""
    voice = Path(path).name.split("_nohash_")[0]
    bucket = int(hashlib.sha1(voice.encode()).hexdigest(), 16) % 10
    return "validation" if bucket == 0 else "test" if bucket == 1 else "train"


SCARCE_LABELS = ("on", "off", ds.UNKNOWN)


def speaker(path) -> str:
    """Speech Commands clips are `<speaker>_nohash_<n>`."""
    return Path(path).name.split("_nohash_")[0]


def cv_fold_of(path, folds: int) -> int:
    """The fold of a clip's speaker: fixed by a hash, so every recipe sees the same folds."""
    return int(hashlib.sha1(speaker(path).encode()).hexdigest(), 16) % folds


def apply_cv_fold(real_sets, folds: int, fold: int) -> None:
    """Speaker-grouped cross-validation of the scarce words (on, off, unknown words), whose
    few dev-list clips say little: the fold's speakers' scarce clips become the test set
    (whatever list they were on), the other scarce clips train; the plentiful commands keep
    the dataset's own lists. No speaker of the fold is trained on."""
    for d in real_sets:
        held = {speaker(c.path) for c in d.clips
                if c.label in SCARCE_LABELS and cv_fold_of(c.path, folds) == fold}
        for c in d.clips:
            if speaker(c.path) in held:
                c.split = "test" if c.label in SCARCE_LABELS else "excluded"
            elif c.label in SCARCE_LABELS:
                c.split = "train"


def _progress(desc):
    from tqdm import tqdm
    return lambda it: tqdm(it, desc=desc, unit="clip", leave=False)


def _cap(clips, n, rng):
    """At most n clips per word, chosen reproducibly."""
    if not n:
        return clips
    by_word = {}
    for c in clips:
        by_word.setdefault(c.word, []).append(c)
    out = []
    for word in sorted(by_word):
        group = by_word[word]
        idx = rng.permutation(len(group))[:n]
        out += [group[i] for i in sorted(idx)]
    return out


def _tile(indices, n, rng):
    """n picks cycling through indices in random order: every clip used about equally."""
    if not indices or n <= 0:
        return []
    return [indices[j % len(indices)] for j in rng.permutation(n)]


ROOMS = 400     # simulated rooms a run draws from (--room-prob); measurements use other seeds


def _augment_config(cfg) -> aug.AugmentConfig:
    """The run's augmentation, the same for the classes and the embedding's episodes."""
    room_bank = rooms.impulse_responses(ROOMS, rooms.TRAINING_SEED) if cfg.room_prob else ()
    return aug.AugmentConfig(shift_ms=cfg.shift_ms, mic_prob=cfg.mic_prob, dc_prob=cfg.dc_prob,
                             speed_prob=cfg.speed_prob, formant_prob=cfg.formant_prob,
                             room_prob=cfg.room_prob, rooms=room_bank)


def _class_plan(real, synth, labels, cfg, rng):
    """Per label, `size` sources [("real"|"synth", index)]; real clips fill at least
    `real_share` (or the label's own in `label_real_share`) of a class that has synthetic
    clips, oversampled when they are few."""
    strange = sorted(l for l in cfg.label_real_share if l not in labels or l == ds.SILENCE)
    if strange:
        raise ds.DatasetError(f"--label-real-share {', '.join(strange)}: not a word label of this "
                              f"run; give one of {', '.join(l for l in labels if l != ds.SILENCE)}")
    counts = [sum(1 for c in real if c.label == l) for l in labels if l != ds.SILENCE]
    size = cfg.class_size or int(np.median([c for c in counts if c] or [1]))
    if cfg.wake_only and not cfg.class_size:  # wake word and silence: half the negatives each
        size = max(1, (sum(c.label == ds.UNKNOWN for c in real + synth)) // 2)
    plan = {}
    for label in labels:
        if label == ds.SILENCE:
            continue
        r = [i for i, c in enumerate(real) if c.label == label]
        s = [i for i, c in enumerate(synth) if c.label == label]
        s = [s[i] for i in rng.permutation(len(s))[: int(round(len(s) * cfg.synth_ratio))]]
        if not r and not s:
            hint = (f" (`hark synth --words \"{cfg.wake}:600\" --out DIR`, then --synth DIR)"
                    if cfg.wake and label == cfg.labels[-1] else "")
            raise ds.DatasetError(f"no training clips for label {label!r}: add a folder for it "
                                  f"or synthesise some with `hark synth`{hint}")
        if cfg.wake_only and label == ds.UNKNOWN:
            # Every negative once per view: false accepts come from the variety of non-wake
            # speech, and the synthetic near misses ("hey", "hark", "hey park") must all be in.
            plan[label] = [("real", i) for i in r] + [("synth", i) for i in s]
            continue
        # Streams are mostly not commands: more (and more varied) negatives cut false accepts.
        n = int(round(size * cfg.unknown_weight)) if label == ds.UNKNOWN else size
        share = cfg.label_real_share.get(label, cfg.real_share)
        n_real = n if not s else min(n, max(len(r), int(np.ceil(share * n))))
        n_real = n_real if r else 0
        plan[label] = ([("real", i) for i in _tile(r, n_real, rng)] +
                       [("synth", i) for i in _tile(s, n - n_real, rng)])
    return plan, size


def build_training_set(real_audio, real, synth_audio, synth, noise, labels, cfg, rng,
                       teacher=None):
    """Augmented training examples, `views` copies, balanced per class. Returns (x, y, z):
    z holds the teacher's logits per example (None without a teacher). The teacher labels
    each source clip once, clean (cached across seeds and folds: labelling every augmented
    view costs ~10x more on 2 cores); silence gets a near one-hot label (logit 10 on
    silence, and a word part of --onset/--tail-unknown one on _unknown_). With a teacher, each
    view also gets `teacher_extra` clips that only the teacher labels (y = -1)."""
    from .distill import EXTRA_KINDS, extra_clip

    plan, size = _class_plan(real, synth, labels, cfg, rng)
    spec = FeatureSpec.from_dict(cfg.spec)
    augment_config = _augment_config(cfg)
    clips, targets, features, logits = [], [], [], []
    extra = cfg.teacher_extra if teacher else 0
    total = cfg.views * (extra + sum(size if l == ds.SILENCE else len(plan[l]) for l in labels))
    words = list(real_audio) + list(synth_audio)

    def any_word():     # a training word for a word part or a lead-in, drawn from all of them
        return fit_clip(words[rng.integers(len(words))])

    word_parts = cfg.onset_unknown + cfg.tail_unknown   # share of _unknown_ that is part of a word
    if teacher:
        source_logits = {"real": teacher.logits([fit_clip(y) for y in real_audio]),
                         "synth": teacher.logits([fit_clip(y) for y in synth_audio])
                         if len(synth_audio) else None}
        def rule_logits(label):     # a near one-hot label the teacher is not asked for
            return np.where(np.arange(len(labels)) == labels.index(label), 10.0, 0.0)
        silence_logits = rule_logits(ds.SILENCE)
        # a word's head or tail is _unknown_ by rule: the teacher would hear the whole word
        part_logits = rule_logits(ds.UNKNOWN)
    pending = []   # teacher-only clips waiting to be labelled, as (index in logits, clip)

    def flush():
        features.append(batch_features(clips, spec))
        clips.clear()

    from tqdm import tqdm
    bar = tqdm(total=total, desc="augmenting" + (" + teacher" if teacher else ""),
               unit="clip", leave=False)
    for _ in range(cfg.views):
        for li, label in enumerate(labels):
            if label == ds.SILENCE:
                for _ in range(size):
                    clips.append(aug.silence_clip(rng, noise, dc_prob=cfg.dc_silence_prob))
                    targets.append(li)
                    if teacher:
                        logits.append(silence_logits)
                bar.update(size)
            else:
                for kind, i in plan[label]:
                    src = real_audio[i] if kind == "real" else synth_audio[i]
                    part = rng.random() if word_parts and label == ds.UNKNOWN else 1.0
                    if part < word_parts:
                        edge = "end" if part < cfg.onset_unknown else "start"
                        clips.append(aug.word_part(any_word(), rng, noise, augment_config, edge))
                    else:
                        clip = fit_clip(src)
                        if cfg.lead_in_prob and rng.random() < cfg.lead_in_prob:
                            clip = aug.with_lead_in(clip, any_word(), rng)
                        clips.append(aug.augment(clip, rng, noise, augment_config))
                    targets.append(li)
                    if teacher:
                        logits.append(part_logits if part < word_parts
                                      else source_logits[kind][i])
                bar.update(len(plan[label]))
            if len(clips) >= 4096:  # features as we go: raw audio of every view would not fit
                flush()
        for i in range(extra):
            clip = extra_clip(EXTRA_KINDS[i % len(EXTRA_KINDS)], words, rng, noise)
            clips.append(clip)
            pending.append((len(logits), clip))
            logits.append(None)
            targets.append(-1)
            if len(clips) >= 4096:
                flush()
        bar.update(extra)
    bar.close()
    flush()
    if pending:
        labelled = teacher.logits([clip for _, clip in pending])
        for (at, _), z in zip(pending, labelled):
            logits[at] = z
    z = np.stack(logits).astype(np.float32) if teacher else None
    return np.concatenate(features), np.asarray(targets, np.int64), z


def eval_clips(audio, clips, noise, labels, rng, spec=DEFAULT_SPEC):
    """Clean clips of a split plus one class's worth of silence clips cut from noise.
    Returns (the 1 s clips, targets)."""
    n_silence = aug.silence_count(len(clips), labels)
    ys = [fit_clip(y, spec) for y in audio] + [aug.silence_clip(rng, noise)
                                               for _ in range(n_silence)]
    targets = [labels.index(c.label) for c in clips] + [labels.index(ds.SILENCE)] * n_silence
    return ys, np.asarray(targets, np.int64)


def eval_set(audio, clips, noise, labels, rng, spec=DEFAULT_SPEC):
    """eval_clips and their features: (features, targets, the 1 s clips themselves)."""
    ys, targets = eval_clips(audio, clips, noise, labels, rng, spec)
    return batch_features(ys, spec), targets, ys


def unused_voices(datasets, drop_engines=()) -> set:
    """Paths of synthetic clips not to train on: voices `hark synth` held out for evaluation,
    and every clip of the engines in drop_engines (to measure what a voice family adds)."""
    out, dropped = set(), set()
    for d in datasets:
        rows = ds.voice_rows(d.root)
        if rows is None:
            if drop_engines and d.clips:
                raise ds.DatasetError(f"{d.root}: no voices.csv, so no clip's engine is known "
                                      "to --drop-engines; render the folder with `hark synth`")
            continue
        for row in rows:
            if row["engine"] in drop_engines:
                dropped.add(row["engine"])
            elif row.get("split") != "holdout":
                continue
            out.add(Path(d.root) / row["path"])
    missing = sorted(set(drop_engines) - dropped)
    if missing:
        raise ds.DatasetError(f"--drop-engines {','.join(missing)}: no clip of "
                              f"{' or '.join(missing)} in {', '.join(str(d.root) for d in datasets)}"
                              " (voices.csv's engine column names them)")
    return out


def load_split_audio(datasets, split, cfg, rng, desc, exclude=(), drop_engines=()):
    """Audio of a split; `exclude` drops words (real on/off, to test synthetic speech alone),
    `drop_engines` the clips of those TTS engines."""
    unused = unused_voices(datasets, drop_engines)
    clips = []
    for d in datasets:
        clips += d.split(split) if split else d.clips
    clips = [c for c in clips if c.word not in exclude and c.path not in unused]
    clips = _cap(clips, cfg.max_per_word, rng)
    audio, kept, skipped = ds.load_clips(clips, progress=_progress(desc))
    return audio, kept


def episode_pool(cfg, sources, noise, spec):
    """The words of the metric-learning episodes: the run's own training clips (sources) and the
    clips of cfg.embedding_synth, augmented as the classifier's are, from a generator of their
    own so that the classifier's examples stay those of the same run without it."""
    from .metric import build_pool

    rng = np.random.default_rng([cfg.seed, 16])
    extra = [ds.load_dataset(p, cfg.labels, require_labels=False) for p in cfg.embedding_synth]
    if extra:
        sources = sources + [load_split_audio(extra, None, cfg, rng, "reading episode words",
                                              exclude=cfg.unseen_words)]
    augment_config = _augment_config(cfg)
    pool = build_pool(sources, noise, spec, cfg, augment_config, rng)
    if len(pool) < 2:
        raise ds.DatasetError(f"--embedding-loss needs clips of at least 2 words with "
                              f"{cfg.embedding_shots + 1}+ clips each outside the held-out words; "
                              f"add folders with --embedding-synth")
    return pool


def add_weights(summed, weights):
    """Running sum of a model's float weights (BatchNorm statistics too); other arrays (a seed
    generator's state) keep their latest value."""
    if summed is None:
        return [np.array(w, dtype=np.float64) if _is_float(w) else w for w in weights]
    return [s + w if _is_float(w) else w for s, w in zip(summed, weights)]


def mean_weights(summed, n: int):
    """The weights of `n` epochs averaged, each array back in its own dtype."""
    return [(s / n).astype(np.float32) if _is_float(s) else s for s in summed]


def _is_float(array) -> bool:
    return np.issubdtype(np.asarray(array).dtype, np.floating)


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes else f"{sec} s"


def train(cfg: TrainConfig) -> dict:
    import keras
    from . import models, report

    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    keras.utils.set_random_seed(cfg.seed)
    out = Path(cfg.out)
    # A wake word has no real clips: without commands every real word is a negative.
    real_sets = [ds.load_dataset(p, cfg.labels, require_labels=not cfg.wake_only)
                 for p in cfg.data]
    synth_sets = [ds.load_dataset(p, cfg.labels, require_labels=False) for p in cfg.synth]
    if cfg.wake:
        wake = cfg.labels[-1]
        for d in synth_sets:
            for c in d.clips:
                c.split = voice_split(c.path) if cfg.wake_only or c.label == wake else "train"
    if cfg.cv_folds:
        apply_cv_fold(real_sets, cfg.cv_folds, cfg.cv_fold)
    noise = [n for d in real_sets for n in ds.load_noise(d)]
    if not noise:
        files = [f for d in real_sets for f in d.noise_files]
        where = (f"none of the {len(files)} files in {files[0].parent} could be read" if files
                 else "no _background_noise_ folder")
        print(f"warning: {where}: silence and noise augmentation use synthetic hiss only")

    train_audio, train_clips = load_split_audio(real_sets, "train", cfg, rng, "reading train",
                                                exclude=cfg.exclude_words + cfg.unseen_words)
    synth_audio, synth_clips = load_split_audio(
        synth_sets, "train" if cfg.wake else None, cfg, rng, "reading synth",
        exclude=cfg.unseen_words, drop_engines=cfg.drop_engines) if synth_sets else ([], [])
    eval_sets = real_sets + synth_sets if cfg.wake else real_sets
    val_audio, val_clips = load_split_audio(eval_sets, "validation", cfg, rng, "reading val")
    test_audio, test_clips = load_split_audio(eval_sets, "test", cfg, rng, "reading test")
    if not train_clips:
        listed = sum(len(d.split("train")) for d in real_sets)
        if listed:
            raise ds.DatasetError(f"none of the {listed} training clips could be read (the "
                                  "warning above names one; `hark data info DIR` counts them): "
                                  "hark reads WAV and FLAC")
        raise ds.DatasetError("no training clips: every clip of --data is named in "
                              "validation_list.txt or testing_list.txt")

    teacher = None
    if cfg.teacher:
        from .distill import synthetic_only, train_teacher
        print(f"training the teacher head on {cfg.teacher} ...", flush=True)
        only_audio, only_clips = synthetic_only(train_clips, synth_audio, synth_clips, cfg.labels)
        teacher = train_teacher(list(train_audio) + only_audio, list(train_clips) + only_clips,
                                val_audio, val_clips, noise, cfg.labels, seed=0)
        if cfg.teacher_filter and synth_clips:
            from .distill import judge_synthetic
            synth_audio, synth_clips, judged = judge_synthetic(
                teacher, synth_audio, synth_clips, cfg.labels, cfg.teacher_filter,
                cfg.teacher_filter_labels or None)
            teacher.metrics["synthetic_kept"] = judged
            print("synthetic clips the teacher accepts: " + ", ".join(
                f"{w} {k}/{n}" for w, (k, n) in sorted(judged.items())), flush=True)
        # Trained or loaded from the cache, the head must not change how the student starts.
        keras.utils.set_random_seed(cfg.seed)
    # --soft-weight 0: the teacher only judges synthetic clips; the student trains as without it
    distil = teacher if cfg.soft_weight > 0 else None
    x_train, y_train, z_train = build_training_set(
        train_audio, train_clips, synth_audio, synth_clips, noise, cfg.labels, cfg, rng,
        distil)
    if cfg.teacher_runs:
        from .run_teacher import RunEnsemble
        print(f"labelling with {len(cfg.teacher_runs)} teacher runs ...", flush=True)
        teacher = distil = RunEnsemble(cfg.teacher_runs)
        z_train = teacher.logits(x_train)
        keras.utils.set_random_seed(cfg.seed)   # loading the runs must not change the student
    spec = FeatureSpec.from_dict(cfg.spec)
    x_val, y_val, _ = eval_set(val_audio, val_clips, noise, cfg.labels, rng, spec)
    x_test, y_test, test_clips_audio = eval_set(test_audio, test_clips, noise, cfg.labels, rng,
                                                spec)

    pool = None
    if cfg.embedding_loss:
        pool = episode_pool(cfg, [(train_audio, train_clips), (synth_audio, synth_clips)],
                            noise, spec)
        print(f"episode pool: {len(pool)} words, {len(pool.x)} examples", flush=True)
    norm = Normalisation.fit(x_train)
    model = models.build(cfg.family, x_train.shape[1:], len(cfg.labels), cfg.width)
    steps = cfg.epochs * int(np.ceil(len(x_train) / cfg.views / cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(steps, 1), alpha=0.02)
    xn_train, xn_val, xn_test = (norm.apply(x) for x in (x_train, x_val, x_test))
    fit_model, t_train, t_val = model, y_train, y_val
    # masked copies to fit on; the calibration set below stays unmasked
    xn_fit = (aug.time_masks(xn_train.copy(), np.random.default_rng([cfg.seed, 17]),
                             cfg.time_masks) if cfg.time_masks else xn_train)
    if distil:
        from .distill import correct_soft, distill_loss, pack, packed_accuracy, soft_targets
        n = len(cfg.labels)
        # The student learns from logits; the saved model (same weights) keeps its softmax.
        fit_model = models.logits_of(model)
        soft = soft_targets(z_train, cfg.temperature)
        if cfg.teacher_correct:
            words = [i for i, l in enumerate(cfg.labels) if l not in (ds.UNKNOWN, ds.SILENCE)]
            soft = correct_soft(soft, y_train, None if cfg.teacher_correct == "all" else words)
        # with mixup every row's hard weight is folded into its one-hot row (a teacher-only
        # clip's is zero), so the loss is linear in the packed target and rows mix exactly
        t_train = pack(y_train, soft, n, hard_weight=np.ones(len(y_train)) if cfg.mixup
                       else None)
        t_val = pack(y_val, np.eye(n, dtype=np.float32)[y_val], n)
        fit_model.compile(optimizer=keras.optimizers.Adam(schedule),
                          loss=distill_loss(n, cfg.temperature, cfg.soft_weight),
                          metrics=[packed_accuracy(n)])
    elif cfg.mixup:     # mixed examples need target distributions, not class indices
        eye = np.eye(len(cfg.labels), dtype=np.float32)
        t_train, t_val = eye[y_train], eye[y_val]
        model.compile(optimizer=keras.optimizers.Adam(schedule),
                      loss="categorical_crossentropy",
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    else:
        model.compile(optimizer=keras.optimizers.Adam(schedule),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    per_view = len(x_train) // cfg.views
    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    if pool:
        from .metric import Trainer
        pool.x = norm.apply(pool.x)
        trainer = Trainer(model, pool, schedule, cfg.embedding_weight, cfg.embedding_way,
                          cfg.embedding_shots)
        history["embedding_loss"], history["embedding_scale"] = [], []
        order_rng = np.random.default_rng([cfg.seed, 16])
    best, best_weights, summed = -1.0, None, None
    mix_rng, silence = np.random.default_rng([cfg.seed, 18]), cfg.labels.index(ds.SILENCE)
    fit_start = time.time()
    for epoch in range(cfg.epochs):
        view = epoch % cfg.views  # each epoch sees a different augmentation of every example
        sl = slice(view * per_view, (view + 1) * per_view)
        if pool:
            h = trainer.epoch(xn_fit[sl], t_train[sl], cfg.batch_size, order_rng)
            h.update(zip(("val_loss", "val_accuracy"),
                         model.evaluate(xn_val, t_val, batch_size=256, verbose=0)))
            h = {k: [v] for k, v in h.items()}
        else:
            x_epoch, t_epoch = xn_fit[sl], t_train[sl]
            if cfg.mixup and (not cfg.mixup_epochs or epoch < cfg.mixup_epochs):
                kept = y_train[sl] == silence if cfg.mixup_keep_silence else None
                x_epoch, t_epoch = aug.mixup(x_epoch, t_epoch, mix_rng, cfg.mixup, kept)
            h = fit_model.fit(x_epoch, t_epoch, batch_size=cfg.batch_size, epochs=1,
                              validation_data=(xn_val, t_val), shuffle=True, verbose=0).history
        for k in history:
            history[k].append(float(h[k][0]))
        per_epoch = (time.time() - fit_start) / (epoch + 1)
        print(f"epoch {epoch + 1}/{cfg.epochs}  loss {history['loss'][-1]:.3f}  "
              f"acc {history['accuracy'][-1]:.3f}  val_acc {history['val_accuracy'][-1]:.3f}  "
              + (f"embedding loss {history['embedding_loss'][-1]:.3f}  " if pool else "") +
              f"({per_epoch:.0f} s/epoch, {_duration(per_epoch * (cfg.epochs - epoch - 1))} left)",
              flush=True)
        if history["val_accuracy"][-1] >= best:
            best, best_weights = history["val_accuracy"][-1], model.get_weights()
        if epoch >= cfg.epochs - cfg.average_epochs:
            summed = add_weights(summed, model.get_weights())
    if cfg.average_epochs:
        model.set_weights(mean_weights(summed, cfg.average_epochs))
        history["averaged_val_accuracy"] = float(
            (model.predict(xn_val, batch_size=256, verbose=0).argmax(axis=1) == y_val).mean())
        print(f"mean of the last {cfg.average_epochs} epochs' weights: val_acc "
              f"{history['averaged_val_accuracy']:.3f} (best epoch {best:.3f})", flush=True)
    else:
        model.set_weights(best_weights)

    out.mkdir(parents=True, exist_ok=True)      # only now: a failed run leaves no empty folder
    model.save(out / "model.keras")
    config = asdict(cfg)
    config["normalisation"] = norm.to_dict()
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "history.json").write_text(json.dumps(history, indent=2))
    np.savez_compressed(out / "calibration.npz", x=xn_train[rng.permutation(len(xn_train))[:500]])
    np.savez_compressed(out / "test_features.npz", x=x_test, y=y_test,
                        x_val=x_val, y_val=y_val)

    probs = model.predict(xn_test, batch_size=256, verbose=0)
    metrics = report.classification_metrics(y_test, probs.argmax(axis=1), cfg.labels)
    metrics["train_examples"] = int(len(x_train))
    if cfg.teacher_runs:
        metrics["teacher"] = {"runs": cfg.teacher_runs, "test": report.classification_metrics(
            y_test, teacher.logits(x_test).argmax(axis=1), cfg.labels)}
    elif teacher:
        t_pred = teacher.logits(test_clips_audio).argmax(axis=1)
        metrics["teacher"] = dict(teacher.metrics, test=report.classification_metrics(
            y_test, t_pred, cfg.labels))
    if cfg.cv_folds:
        metrics["cv"] = {"folds": cfg.cv_folds, "fold": cfg.cv_fold}
    metrics["seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps({"float_test": metrics}, indent=2))
    report.plot_history(history, out / "history.png")
    report.plot_confusion(metrics, out / "confusion_float.png", "float model, dev test")
    return metrics
