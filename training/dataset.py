"""Speech Commands-layout datasets: `<word>/<clip>.wav|.flac`, optional `_background_noise_/`,
`validation_list.txt` and `testing_list.txt` (everything else is training).

Words map to the standard 12-class task: the ten commands, `_unknown_` for every other
word, and `_silence_` cut from the background noise.
"""
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE, UNKNOWN = "_silence_", "_unknown_"
LABELS = [SILENCE, UNKNOWN] + COMMANDS
AUDIO_SUFFIXES = (".wav", ".flac")
NOISE_DIR = "_background_noise_"
SAMPLE_RATE = 16000


class DatasetError(ValueError):
    """A dataset the loader cannot use; the message says what to fix."""


@dataclass
class Clip:
    path: Path
    word: str
    label: str
    split: str  # train | validation | test


@dataclass
class Dataset:
    root: Path
    clips: list
    noise_files: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    lists: dict = field(default_factory=dict)      # {list file name: entries it names}
    missing: dict = field(default_factory=dict)    # {list file name: entries with no clip}

    def split(self, name: str) -> list:
        return [c for c in self.clips if c.split == name]

    def counts(self) -> dict:
        """{split: {label: n}} for reports."""
        out = {}
        for c in self.clips:
            out.setdefault(c.split, {}).setdefault(c.label, 0)
            out[c.split][c.label] += 1
        return out


def label_for(word: str, labels=LABELS) -> str:
    return word if word in labels else UNKNOWN


def _read_list(path: Path) -> set:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def load_dataset(root, labels=LABELS, require_labels=True) -> Dataset:
    """Index a Speech Commands-layout folder (no audio is read here)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder. Point --data at a Speech Commands-layout "
                           f"folder (<word>/<clip>.wav) or run `hark data fetch speech-commands`.")
    validation = _read_list(root / "validation_list.txt")
    testing = _read_list(root / "testing_list.txt")
    clips, empty = [], []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if word_dir.name == NOISE_DIR or word_dir.name.startswith("."):
            continue
        files = sorted(p for p in word_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            empty.append(word_dir.name)
            continue
        for f in files:
            rel = f"{word_dir.name}/{f.name}"
            split = "test" if rel in testing else "validation" if rel in validation else "train"
            clips.append(Clip(f, word_dir.name, label_for(word_dir.name, labels), split))
    if empty:
        raise DatasetError(f"{root}: label folder(s) with no .wav/.flac clips: {', '.join(empty)}. "
                           "Remove them or add audio.")
    if not clips:
        raise DatasetError(f"{root}: no clips found. Expected <word>/<clip>.wav or .flac folders.")
    if require_labels:
        present = {c.label for c in clips}
        wanted = [l for l in labels if l not in (SILENCE, UNKNOWN)]
        if not present.intersection(wanted):
            raise DatasetError(f"{root}: none of the label folders {wanted} exist; found words "
                               f"{sorted({c.word for c in clips})[:10]}. Is this the right folder?")
    noise_dir = root / NOISE_DIR
    noise = sorted(p for p in noise_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) \
        if noise_dir.is_dir() else []
    present = {f"{c.word}/{c.path.name}" for c in clips}
    lists = {name: entries for name, entries in (("validation_list.txt", validation),
                                                 ("testing_list.txt", testing)) if entries}
    missing = {name: sorted(entries - present) for name, entries in lists.items()
               if entries - present}
    return Dataset(root, clips, noise, lists=lists, missing=missing)


def voice_rows(root):
    """The rows of a synthetic folder's voices.csv (`hark synth` writes one: path, voice,
    engine, split, ...), each with its engine (tables from before that column name it only as
    the voice's prefix); None when the folder has no table."""
    import csv

    table = Path(root) / "voices.csv"
    if not table.exists():
        return None
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["engine"] = row.get("engine") or row["voice"].split("-")[0]
    return rows


def read_audio(path, sample_rate: int = SAMPLE_RATE, on_convert=None) -> np.ndarray:
    """Mono float32 audio at sample_rate. Other rates are resampled and stereo is downmixed,
    reported through on_convert(message) (default: a warning) so nothing changes silently."""
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    notes = []
    if y.shape[1] != 1:
        notes.append(f"{y.shape[1]} channels downmixed to mono")
    y = y.mean(axis=1)
    if sr != sample_rate:
        import librosa
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
        notes.append(f"resampled {sr} -> {sample_rate} Hz")
    if notes:
        message = f"{path}: " + "; ".join(notes)
        (on_convert or (lambda m: warnings.warn(m, stacklevel=2)))(message)
    return y.astype(np.float32)


def probe_clips(paths, sample_rate=SAMPLE_RATE):
    """From the file headers only: ([(path, why)] unreadable or empty, [path] that training
    would convert because they are not sample_rate mono)."""
    import soundfile as sf

    unreadable, converted = [], []
    for path in paths:
        try:
            info = sf.info(str(path))
        except Exception as exc:
            unreadable.append((path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        if info.frames == 0:
            unreadable.append((path, "no samples"))
        elif info.samplerate != sample_rate or info.channels != 1:
            converted.append(path)
    return unreadable, converted


def load_clips(clips, sample_rate=SAMPLE_RATE, progress=None):
    """Read clips, skipping unreadable files. Returns (audio list, kept clips, skipped paths)."""
    audio, kept, skipped = [], [], []
    conversions = []
    for c in (progress(clips) if progress else clips):
        try:
            audio.append(read_audio(c.path, sample_rate, on_convert=conversions.append))
            kept.append(c)
        except Exception as exc:  # a long run must survive one bad file
            skipped.append((c.path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    if conversions:
        warnings.warn(f"{len(conversions)} clip(s) were converted to {sample_rate} Hz mono, "
                      f"e.g. {conversions[0]}", stacklevel=2)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable clip(s), e.g. {skipped[0][0]}: "
                      f"{skipped[0][1]}", stacklevel=2)
    return audio, kept, skipped


def load_noise(dataset: Dataset, sample_rate=SAMPLE_RATE) -> list:
    """Background noise recordings, each peak-normalised so mixing levels mean the same for all."""
    bank = []
    for path in dataset.noise_files:
        try:
            y = read_audio(path, sample_rate)
        except Exception as exc:
            warnings.warn(f"skipped noise file {path}: {exc}", stacklevel=2)
            continue
        peak = np.max(np.abs(y)) or 1.0
        bank.append((y / peak).astype(np.float32))
    return bank
