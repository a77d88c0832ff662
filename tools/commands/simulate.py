"""`hark simulate`: what the device would detect in WAV files, run by the real firmware on the host."""
from pathlib import Path

from hark import boards
from hark.deploy import DEFAULT_MODEL
from hark.unixport import run_firmware


def register(sub):
    p = sub.add_parser(
        "simulate", help="run the device firmware on WAV files and print its detections",
        description="Runs firmware/main.py in the MicroPython unix port, precompiled as for a board "
                    "and with the heap capped at the board's RAM budget, on each 16 kHz mono 16-bit "
                    "WAV file. Prints one `t=SECONDS LABEL SCORE` line per detection. The board "
                    "profile supplies the detector overrides and grammar; its LED/pin actions are "
                    "replaced by printing.")
    p.add_argument("audio", nargs="+", type=Path, metavar="AUDIO.wav", help="16 kHz mono 16-bit WAV files")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"model blob (default {DEFAULT_MODEL})")
    p.add_argument("--board", default="unix",
                   help=f"board profile name ({', '.join(boards.available())}) or .json (default unix)")
    p.add_argument("--pad-ms", type=int, default=1000,
                   help="silence appended to each file so a word at its very end is still "
                        "averaged over a full window (default 1000)")
    p.add_argument("--heapsize", help="override the board's RAM budget, e.g. 200000 or 256k")
    p.add_argument("--stats", action="store_true", help="per-stage µs per 20 ms hop and heap use")
    p.add_argument("--score", action="store_true",
                   help="files are named <word>__*.wav (as in samples/): say per file whether "
                        "the device heard the right word, and count the hits")
    p.set_defaults(func=run)


def expected_label(path: Path, labels) -> str:
    """The label a `<word>__*.wav` file should trigger: the word, or nothing for others."""
    word = path.name.split("__", 1)[0]
    return word if word in labels and not word.startswith("_") else None


def verdict(expected, heard) -> bool:
    """A command clip must fire its word and nothing else; any other clip must stay quiet."""
    return heard == [expected] if expected else not heard


def run(args):
    board = boards.load(args.board)
    labels = boards.read_blob_meta(args.model)["labels"] if args.score else []
    tally = {True: [0, 0], False: [0, 0]}  # is a command clip -> [right, total]
    for path in args.audio:
        result = run_firmware(args.model, board, wav=path, heapsize=args.heapsize,
                              pad_ms=args.pad_ms, stats=args.stats)
        heard = [det.label for det in result.detections]
        if args.score:
            expected = expected_label(path, labels)
            ok = verdict(expected, heard)
            tally[bool(expected)][0] += ok
            tally[bool(expected)][1] += 1
            want = expected or "nothing"
            print(f"{path}: heard {', '.join(heard) or 'nothing'} "
                  f"(expected {want}) {'ok' if ok else 'MISS'}")
        else:
            print(f"{path}:")
            for det in result.detections:
                print(f"  {det}")
            if not result.detections:
                print("  (no detections)")
        if args.stats:
            for key, value in result.stats.items():
                print(f"  stats {key}={value}")
    if args.score:
        (hit, n_cmd), (quiet, n_other) = tally[True], tally[False]
        print(f"\ncommand clips: heard the right word in {hit}/{n_cmd}; "
              f"unknown words and silence: stayed quiet in {quiet}/{n_other}")
    return 0

