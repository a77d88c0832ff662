"""`hark simulate`: what the device would detect in WAV files, run by the real firmware on the host."""
import argparse
import json
from pathlib import Path

from hark import boards
from hark.cli import HarkError
from hark.deploy import DEFAULT_MODEL
from hark.unixport import heap_size, run_firmware


def register(sub):
    p = sub.add_parser(
        "simulate", help="run the device firmware on WAV files and print its detections",
        description="Runs firmware/main.py in the MicroPython unix port, precompiled as for a board "
                    "and with the heap capped at the board's RAM budget, on each 16 kHz mono 16-bit "
                    "WAV file. Prints one `t=SECONDS LABEL SCORE` line per detection. The board "
                    "profile supplies the detector overrides and grammar; its LED/pin actions are "
                    "replaced by printing.")
    p.add_argument("audio", nargs="+", type=Path, metavar="AUDIO.wav", help="16 kHz mono 16-bit WAV files")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model blob (default models/default.hark)")
    p.add_argument("--board", default="unix",
                   help=f"board profile name ({', '.join(boards.available())}) or .json (default unix)")
    p.add_argument("--pad-ms", type=int, default=1000,
                   help="silence appended to each file so a word at its very end is still "
                        "averaged over a full window (default 1000)")
    p.add_argument("--heapsize", type=heap_size,
                   help="override the board's RAM budget, e.g. 200000 or 256k")
    p.add_argument("--stats", action="store_true", help="per-stage µs per 20 ms hop and heap use")
    p.add_argument("--score", action="store_true",
                   help="files are named <word>__*.wav (as in samples/): say per file whether "
                        "the device heard the right word, and count the hits")
    p.add_argument("--events", type=Path, metavar="EVENTS.json",
                   help="word times of one long stream (stream_events.json, written by "
                        "`python -m hark.training.stream --keep DIR` or `hark bench`): score "
                        "missed commands, false accepts per hour, latency after word end and "
                        "heap drift (bytes allocated per hop), as `make stream-hour` does")
    p.add_argument("--enroll", type=Path, metavar="DIR",
                   help="first enroll a new word from the 2-10 clips in DIR (one utterance each, "
                        "16 kHz mono WAV/FLAC), as `hark enroll` does on a board, then listen for "
                        "it too (with --word)")
    p.add_argument("--word", help="the name of the word enrolled from --enroll DIR")
    p.add_argument("--enrolled", type=Path, metavar="FILE",
                   help="keep the enrolled words in FILE (default: a temporary file); an existing "
                        "FILE's words are listened for too")
    p.epilog = ("examples:\n  hark simulate samples/*.wav --score\n"
                "  hark simulate --enroll clips/marvin --word marvin test/*.wav\n"
                "  hark simulate DIR/stream.wav --events DIR/stream_events.json")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=run)


def expected_label(path: Path, labels) -> str:
    """The label a `<word>__*.wav` file should trigger: the word, or nothing for others."""
    word = path.name.split("__", 1)[0]
    return word if word in labels and not word.startswith("_") else None


def verdict(expected, heard) -> bool:
    """A command clip must fire its word and nothing else; any other clip must stay quiet."""
    return heard == [expected] if expected else not heard


def score_events(args, board) -> int:
    """One long WAV against its word times, through the firmware: what `make stream-hour` reports."""
    if len(args.audio) != 1:
        raise HarkError("--events scores one stream: give exactly one WAV file")
    try:
        events = json.loads(args.events.read_text())
    except (OSError, ValueError) as exc:
        raise HarkError(f"cannot read the word times {args.events}: {exc}") from None
    if not isinstance(events, list) or not all(
            isinstance(e, dict) and {"label", "start_s", "end_s", "target"} <= e.keys() for e in events):
        raise HarkError(f"{args.events} is not a list of word events with label, start_s, end_s "
                        "and target (write one with `python -m hark.training.stream --keep DIR`)")
    from hark.training.report import num
    from hark.training.stream import score_stream
    import soundfile as sf
    seconds = sf.info(str(args.audio[0])).duration
    result = run_firmware(args.model, board, wav=args.audio[0], heapsize=args.heapsize,
                          pad_ms=args.pad_ms, stats=True, heapcheck=True, progress=None,
                          enrolled=args.enrolled)
    score = score_stream(result.detections, events, seconds=seconds)
    stats = result.stats
    print(f"{args.audio[0]}: {seconds / 3600:.2f} h, {score['targets']} commands, "
          f"{score['distractors']} other words")
    detected = None if score["frr"] is None else 100 * (1 - score["frr"])
    print(f"  detected {score['hits']}/{score['targets']} ({num(detected, '{:.1f}')} %), "
          f"false accepts {score['false_accepts']} ({num(score['fa_per_hour'], '{:.1f}')} per hour; "
          f"{score['spurious']} outside any word), latency after word end median "
          f"{num(score['latency_ms_median'], '{:.0f}')} ms, p90 {num(score['latency_ms_p90'], '{:.0f}')} ms")
    print(f"  heap: peak {stats.get('heap_peak')} B, live {stats.get('heap_live')} B; allocated "
          f"while running: {stats.get('alloc_bytes')} B over {stats.get('blocks_checked')} blocks")
    print(f"  µs per 20 ms hop: {stats.get('us_per_hop.total')} (front end "
          f"{stats.get('us_per_hop.frontend')}, inference {stats.get('us_per_hop.infer')})")
    return 0


def _no_samples(path) -> bool:
    import wave
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() == 0
    except (wave.Error, EOFError, OSError):     # a header the firmware read but `wave` cannot
        return False


def enroll_first(args, board, tmp):
    """--enroll DIR --word NAME: the firmware's enroll mode on the clips; the file it wrote."""
    from hark.unixport import run_enroll
    if not args.word:
        raise HarkError("--enroll DIR needs --word NAME: the name the board will print")
    if not args.enroll.is_dir():
        raise HarkError(f"--enroll {args.enroll}: not a folder; give a folder of 2-10 clips")
    clips = sorted(p for p in args.enroll.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    if not 2 <= len(clips) <= 10:
        raise HarkError(f"--enroll {args.enroll}: {len(clips)} WAV/FLAC clips; give 2 to 10 "
                        "utterances of the word")
    path = args.enrolled or Path(tmp) / "enrolled.bin"
    print(run_enroll(args.model, board, clips, args.word, path, args.heapsize).strip())
    return path


def run(args):
    import tempfile
    board = boards.load(args.board)
    if args.word and not args.enroll:
        raise HarkError("--word names the word enrolled from --enroll DIR; give --enroll too")
    with tempfile.TemporaryDirectory(prefix="hark-sim-") as tmp:
        args.enrolled = enroll_first(args, board, tmp) if args.enroll else args.enrolled
        return listen(args, board)


def listen(args, board):
    if args.events:
        return score_events(args, board)
    labels = boards.read_blob_meta(args.model)["labels"] if args.score else []
    tally = {True: [0, 0], False: [0, 0]}  # is a command clip -> [right, total]
    unscored = 0
    for path in args.audio:
        result = run_firmware(args.model, board, wav=path, heapsize=args.heapsize,
                              pad_ms=args.pad_ms, stats=args.stats, progress=None,
                              enrolled=args.enrolled)
        if _no_samples(path):      # after the run: a damaged file gets the firmware's message
            raise HarkError(f"{path}: the WAV has no samples (nothing was recorded); record it again")
        heard = [det.label for det in result.detections]
        if args.score and "__" not in path.name:
            unscored += 1
            print(f"{path}: heard {', '.join(heard) or 'nothing'} (not scored: the name has no "
                  "`<word>__` prefix, e.g. yes__me.wav, or _unknown___x.wav for other speech)")
        elif args.score:
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
              f"unknown words and silence: stayed quiet in {quiet}/{n_other}"
              + (f"; {unscored} file(s) not scored (no `<word>__` prefix)" if unscored else ""))
    return 0

