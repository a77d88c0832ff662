"""`hark synth`: synthetic speech clips (TTS) for words real data lacks."""
import time

from hark.cli import HarkError

DESCRIPTION = """\
Speak words with offline TTS engines (by default espeak-ng accents x variants,
flite and festival; --engines adds MBROLA, RHVoice, SVOX Pico and Kokoro), perturb
pitch, formants and tempo, place each word at a random point of a 1 s window, add
light noise/reverb/gain, and write 16 kHz mono 16-bit WAV clips in Speech Commands
layout: OUT/<word>/<voice>_nohash_<n>.wav (phrases use underscores: "hey hark" ->
OUT/hey_hark/). OUT/voices.csv records the voice, engine, licence and parameters of
every clip. Same --seed, same bytes.

Voices are split once and for all into "train" and "holdout" (whole espeak-ng
accents/variants and one or two speakers of every other engine): synthesise training
data from --voice-set train and evaluate wake words on --voice-set holdout.
"""

EXAMPLES = """\
examples:
  hark synth --words "on:600,off:600,yes,no" --per-word 150 --out data/synth/commands
  hark synth --unknown 1500 --out data/synth/unknown
  hark synth --words "hey hark" --per-word 50 --voice-set holdout --out data/synth/wake_eval
  hark synth --near-misses "hey hark" --per-word 60 --voice-set holdout --out data/synth/near_hey_hark
  hark synth --words "on:600,off:600" --engines mbrola,rhvoice,pico:2,kokoro --out data/synth/more
  hark synth --list-voices --engines all
"""


def register(sub):
    import argparse
    from hark.training.synth import DEFAULT_ENGINES, ENGINES
    p = sub.add_parser("synth", help="synthesise training clips with offline TTS",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--words", default="",
                   help='comma-separated words or phrases, e.g. "on,off,hey hark"; '
                        'WORD:N overrides --per-word for that word, e.g. "on:600,off:600,yes"')
    p.add_argument("--out", help="output folder (Speech Commands layout)")
    p.add_argument("--per-word", type=int, default=100, metavar="N", help="clips per word (100)")
    p.add_argument("--unknown", type=int, default=0, metavar="N",
                   help="also N clips spread over a few hundred common words and near misses "
                        "(one folder per word; training maps them to _unknown_)")
    p.add_argument("--near-misses", metavar="PHRASE",
                   help="also --per-word clips of each phrase a wake phrase is likely to be "
                        'mistaken for ("hey hark": hey, hark, hey bark, hey dark, hey mark, ...), '
                        "to count false wakes on (python -m hark.training.assistant_eval "
                        "--near-misses DIR)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files (0)")
    p.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                   help=f"comma-separated TTS engines from {','.join(ENGINES)}, or 'all' "
                        f"(those installed); ENGINE:W sets an engine's share of clips, "
                        f"e.g. mbrola:2,pico:1 ({','.join(DEFAULT_ENGINES)})")
    p.add_argument("--voice-set", choices=["train", "holdout", "all"], default="train",
                   help="which side of the fixed voice split to use (train)")
    p.add_argument("--noise", metavar="DIR",
                   help="folder of noise recordings to mix in (e.g. _background_noise_); "
                        "default: no noise")
    p.add_argument("--no-augment", action="store_true",
                   help="no noise/reverb/random gain (pitch/tempo perturbation stays)")
    p.add_argument("--formant-warp", type=float, default=0.0, metavar="P",
                   help="share of clips (0..1) whose vocal-tract length is warped by 0.82-1.2 "
                        "with the pitch kept: more distinct speakers from the same voices (0)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (2)")
    p.add_argument("--list-voices", action="store_true",
                   help="print the installed voices, their split and licence, then exit")
    p.set_defaults(func=run)


def run(args):
    from hark.training import synth
    try:
        engines = parse_engines(args.engines)
        if args.list_voices:
            for v in synth.list_voices(engines):
                print(f"{v.id}\t{v.engine}\t{v.name}\t{v.split}\t{v.licence}")
            return 0
        words = parse_words(args.words, args.per_word)
        if args.near_misses is not None:
            words.update(dict.fromkeys(synth.near_miss_phrases(args.near_misses), args.per_word))
        if not args.out:
            raise HarkError("--out is required; give the folder to write the clips to")
        if not words and args.unknown <= 0:
            raise HarkError('nothing to do; give --words "on,off", --near-misses PHRASE '
                            'and/or --unknown N')
        if not 0 <= args.formant_warp <= 1:
            raise HarkError("--formant-warp is a share of clips: give a number from 0 to 1")
        if args.jobs < 1:
            raise HarkError("--jobs must be at least 1")
        start = time.time()
        rows = synth.synthesize(args.out, words=words, per_word=args.per_word,
                                unknown=args.unknown, seed=args.seed, engines=engines,
                                voice_set=args.voice_set, noise_dir=args.noise,
                                augment=not args.no_augment,
                                formant_prob=args.formant_warp, jobs=args.jobs)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:   # EngineMissing too
        raise HarkError(str(exc)) from None
    voices = len({r["voice"] for r in rows})
    labels = len({r["label"] for r in rows})
    print(f"wrote {len(rows)} clips of {labels} words from {voices} voices to {args.out} "
          f"in {time.time() - start:.0f} s (voices.csv lists each clip's voice)")
    return 0


def parse_engines(text: str) -> dict:
    """'mbrola:2,pico' -> {'mbrola': 2.0, 'pico': None} (None: the default share).
    'all' is every engine that is installed here; the others are named on stderr."""
    import sys
    from hark.training import synth
    if text.strip() == "all":
        missing = [e for e in synth.ENGINES if not synth.installed(e)]
        for engine in missing:
            print(f"note: skipping TTS engine {engine} (not installed; "
                  f"{synth.ENGINES[engine][1]})", file=sys.stderr)
        engines = {e: None for e in synth.ENGINES if e not in missing}
        if not engines:
            raise HarkError("no TTS engine is installed; run make system-deps or make synth-deps")
        return engines
    engines = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, _, weight = item.partition(":")
        name = name.strip()
        if name not in synth.ENGINES:
            raise HarkError(f"unknown TTS engine {name!r}; choose from "
                            f"{', '.join(synth.ENGINES)} or 'all'")
        try:
            engines[name] = float(weight) if weight else None
        except ValueError:
            raise HarkError(f"bad engine share in {item!r}; write ENGINE:W, e.g. mbrola:2") from None
        if weight and not engines[name] > 0:
            raise HarkError(f"the share of engine {name} must be above 0")
    if not engines:
        raise HarkError(f"no TTS engine given; choose from {', '.join(synth.ENGINES)} or 'all'")
    return engines


def parse_words(text: str, per_word: int) -> dict:
    """'on:600,off,hey hark' -> {'on': 600, 'off': per_word, 'hey hark': per_word}."""
    from hark.training.synth import label_for
    words = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        word, _, count = item.partition(":")
        word = " ".join(word.split())
        try:
            n = int(count) if count else per_word
        except ValueError:
            raise HarkError(f"bad clip count in {item!r}; write WORD:N, e.g. on:600") from None
        if n < 1:
            raise HarkError(f"clip count for {word!r} must be at least 1")
        label_for(word)
        words[word] = n
    return words
