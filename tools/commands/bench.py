"""`hark bench`: accuracy, size, speed, heap and FRR/false accepts of the shipped models."""
import argparse
from pathlib import Path

from hark import MODELS_DIR, REPO
from hark.cli import HarkError

DEFAULT_DATA = REPO.parent / "shared" / "data" / "speech_commands"

HELP = """\
Measures every shipped model (models/default.hark, esp32.hark, wide.hark, dscnn.hark, tiny_conv.hark, whichever exist)
in one run: accuracy on the dev test list (float Keras model when models/<name>.keras exists,
int8 in TFLite Micro with librosa features and with the device's integer front end),
per-class recall, params/bytes/arena/MACs, the real firmware in the MicroPython unix port on a
generated long stream (µs per 20 ms hop, real-time factor, peak heap, false rejects and false
accepts per hour), ratios against the default model and per-board time estimates; and, in a
full run, the wake word + commands model (models/assistant.hark) end to end: held-out-voice
"hey hark" + real command pairs and 1 h of real speech without the wake phrase (wake recall,
command-after-wake recall, latency, false wakes and false commands per hour, DET curve; needs
`make synth`'s data/synth/wake_eval, else reported as not measured; adds ~10 min).

Writes OUT/results.json, OUT/results.md, OUT/stream.wav (+ its word times in
OUT/stream_events.json) and, for a full run, the README's benchmark section (between
<!-- bench:start --> and <!-- bench:end -->). The full run takes 10-20 min on 2 cores;
--quick (3 clips per word, 45 s stream; 1-3 min on 2 cores, with load) is what CI runs and only
writes OUT: its few-clip numbers never replace the README's.

examples:
  hark bench --quick
  nice hark bench --data ../shared/data/speech_commands --out bench
"""


def register(sub):
    p = sub.add_parser("bench", help="benchmark the shipped models", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 clips per word and a 45 s stream (1-3 min); "
                   "writes only OUT, never the README")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="Speech Commands-layout folder (default ../shared/data/speech_commands "
                        "next to the checkout)")
    p.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default bench)")
    p.add_argument("--models", type=Path, default=MODELS_DIR, help="model folder (default models/)")
    p.add_argument("--stream-seconds", type=float, help="length of the generated stream "
                   "(default 600, --quick 45)")
    p.add_argument("--seed", type=int, default=7, help="stream seed (default 7)")
    p.add_argument("--wake-eval", type=Path, help="held-out voices' wake phrases for the assistant "
                   "model (default data/synth/wake_eval, made by `make synth`)")
    p.add_argument("--readme", type=Path,
                   help="README whose bench section a full run updates (default the repository's)")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.set_defaults(func=run)


def run(args):
    from hark.training.bench import run_bench
    from hark.training.dataset import DatasetError

    if not args.data.is_dir():
        raise HarkError(f"{args.data}: no such folder; pass --data DIR (a Speech Commands-layout "
                        "folder) or run `hark data fetch speech-commands`")
    if args.quick and args.readme:
        raise HarkError("--quick never writes a README (its numbers come from a few clips); "
                        "drop --readme, or run the full bench")
    readme = args.readme or REPO / "README.md"
    try:
        res = run_bench(args.data, args.out, args.models, quick=args.quick, seed=args.seed,
                        stream_seconds=args.stream_seconds, wake_eval=args.wake_eval,
                        readme=None if args.no_readme or args.quick else readme)
    except DatasetError as exc:
        raise HarkError(str(exc)) from exc
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}"
          + (f"; updated {readme}" if res["readme_updated"] else ""))
    bad = {n: r["errors"] for n, r in res["models"].items() if r["errors"]}
    if bad:
        raise HarkError(f"some measurements failed: {bad}")
    return 0
