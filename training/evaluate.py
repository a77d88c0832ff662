"""Evaluation of an exported model on any Speech Commands-layout folder.

Engines: `tflite` runs the int8 model in TFLite Micro (the bit-exact reference), `firmware`
runs hark's own int8 engine in the MicroPython unix port, `float` runs the Keras model of a
training run. Features come from librosa (the reference) or from the numpy model of the
device's integer front end (`--features device`), so the accuracy cost of the device front
end can be measured.
"""
from pathlib import Path

import numpy as np

from . import augment as aug
from . import dataset as ds
from .features import FeatureSpec, Normalisation, batch_features


LIST_OF = {"test": "testing_list.txt", "validation": "validation_list.txt"}


def select_clips(d: ds.Dataset, split: str):
    """(clips, which clips and why, warnings) of a split; without its list file, every clip,
    with a warning that they may include training data."""
    warnings = []
    name = LIST_OF.get(split)
    if split == "all":
        return d.clips, f"every clip of {d.root} ({len(d.clips)})", warnings
    if name and name in d.missing:
        gone = d.missing[name]
        warnings.append(f"{len(gone)} of the {len(d.lists[name])} entries of {d.root / name} have no "
                        f"clip in the folder (e.g. {gone[0]}); evaluating the rest")
    chosen = d.split(split)
    if chosen:
        source = name or "clips in neither list"
        return chosen, f"the {split} split of {d.root} ({len(chosen)} clips, {source})", warnings
    if name and name not in d.lists:
        warnings.append(f"{d.root} has no {name}: evaluating all {len(d.clips)} clips, which may "
                        "include the model's training data (pass --split all to mean it)")
        return d.clips, f"every clip of {d.root} ({len(d.clips)}; no {name})", warnings
    raise ds.DatasetError(f"{d.root}: the {split} split has no clips; pick another --split")


def eval_clips(data_dir, labels, seed: int = 1234, max_per_word: int = 0, progress=None,
               split: str = "test", words=None, say=None):
    """(audio, targets, words) for a split of a folder (the test list by default, every clip
    if the folder has no lists), plus `_silence_` clips cut from its background noise, one
    class's worth. `words` keeps only those words (and silence only if listed). say(message)
    hears which clips were used; problems with the lists are warnings."""
    import warnings

    d = ds.load_dataset(data_dir, labels, require_labels=not words)
    clips, source, problems = select_clips(d, split)
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    if words:
        clips = [c for c in clips if c.word in words or c.label in words]
        if not clips and not (ds.SILENCE in words and d.noise_files):
            there = sorted({c.word for c in d.clips})
            raise ds.DatasetError(f"no clips of {', '.join(words)} in {source}; the folder has "
                                  f"{', '.join(there[:15])}{' …' if len(there) > 15 else ''} "
                                  f"(labels of the model: {', '.join(labels)})")
    if say:
        say(f"clips: {source}" + (f", words {', '.join(words)}" if words else ""))
    if max_per_word:
        by_word = {}
        for c in clips:
            by_word.setdefault(c.word, []).append(c)
        clips = [c for w in sorted(by_word) for c in by_word[w][:max_per_word]]
    audio, kept, skipped = ds.load_clips(clips, progress=progress)
    if clips and not kept:
        raise ds.DatasetError(f"none of the {len(clips)} clips could be read ({source}; e.g. "
                              f"{skipped[0][0]}: {skipped[0][1]}); hark reads WAV and FLAC")
    targets = [labels.index(c.label) for c in kept]
    kept_words = [c.word for c in kept]
    noise = ds.load_noise(d)
    if noise and ds.SILENCE in labels and (not words or ds.SILENCE in words):
        rng = np.random.default_rng(seed)
        per_class = aug.silence_count(len(kept), labels)
        audio += [aug.silence_clip(rng, noise) for _ in range(per_class)]
        targets += [labels.index(ds.SILENCE)] * per_class
        kept_words += [ds.SILENCE] * per_class
    return audio, np.asarray(targets, np.int64), kept_words


def quantise(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def reference_int8(audio, meta: dict) -> np.ndarray:
    """librosa MFCC -> fixed normalisation -> int8 model input."""
    spec = FeatureSpec.from_dict(meta["features"])
    norm = Normalisation.from_dict(meta["features"]["normalisation"])
    q = meta["model"]["input"]
    return quantise(norm.apply(batch_features(audio, spec)), q["scale"], q["zero_point"])


def device_int8(audio, meta: dict, arrays: dict) -> np.ndarray:
    """The device front end's integer arithmetic, run in numpy (bit-exact with the firmware)."""
    from .frontend_tables import device_features_numpy
    from .features import fit_clip

    def pcm(y):  # float [-1, 1) read from 16-bit files -> the same int16 samples
        return np.clip(np.round(fit_clip(y) * 32768), -32768, 32767).astype(np.int16)

    return device_features_numpy(np.stack([pcm(y) for y in audio]), meta, arrays)


def run_engine(engine: str, model_path: Path, x_int8: np.ndarray, meta: dict) -> np.ndarray:
    """int8 inputs (n, frames, coeffs) -> int8 outputs (n, labels)."""
    if engine == "tflite":
        from .convert import run_tflm
        tflite = Path(model_path).with_suffix(".tflite")
        if not tflite.exists():
            raise FileNotFoundError(f"{tflite} not found: the tflite engine needs the .tflite "
                                    "written next to the blob by `hark export`")
        return run_tflm(tflite.read_bytes(), x_int8)
    if engine == "firmware":
        from hark.engine_batch import run_engine_batch
        return run_engine_batch(model_path, x_int8)
    raise ValueError(f"unknown engine {engine!r}: use tflite or firmware")
