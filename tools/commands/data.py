"""`hark data`: fetch public datasets and describe Speech Commands-layout folders."""
import argparse
import csv

from hark.cli import HarkError

FETCH_DESCRIPTION = """\
Download a public dataset into a cache folder and unpack it once. The download is
resumable (run the same command again after an interruption), its size and SHA-256
are checked against the published values, and a second call does nothing.

  speech-commands   Speech Commands v0.02 (Warden 2018, CC BY 4.0), 2.4 GB download,
                    ~3.8 GB unpacked, 35 words, 105,829 clips.
"""


EXAMPLES = """\
examples:
  hark data fetch speech-commands                 # into ~/.cache/hark (resumable, checksummed)
  hark data info ../shared/data/speech_commands   # clips per word, label and split
  hark data info data/synth/commands              # also: voices and engines of synthetic clips
"""


def register(sub):
    p = sub.add_parser("data", help="fetch datasets, show what a data folder holds",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    from hark.training.fetch import DATASETS
    f = data_sub.add_parser("fetch", help="download and unpack a public dataset",
                            description=FETCH_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("dataset", choices=sorted(DATASETS))
    f.add_argument("--dest", metavar="DIR",
                   help="folder for the archive and the unpacked data (default $HARK_CACHE, "
                        "else ~/.cache/hark)")
    f.add_argument("--url", help="download from this mirror instead (same file expected: the "
                                 "published size and SHA-256 are still checked)")
    f.add_argument("--sha256", metavar="HEX",
                   help="expected SHA-256 of the file at --url (a different file: its size is "
                        "then taken from the server)")
    f.add_argument("--keep-archive", action="store_true",
                   help="keep the .tar.gz after unpacking (deleted by default)")
    f.add_argument("--retries", type=int, default=3,
                   help="reconnect this many times after a dropped connection (3)")
    f.set_defaults(func=run_fetch)

    i = data_sub.add_parser("info", help="clips per word, label and split of a data folder",
                            description="Clips per word, label and split (from the folder's "
                                        "validation/testing lists), and the clips that cannot be "
                                        "read or are not 16 kHz mono: check a folder before "
                                        "training on it.")
    i.add_argument("dir", help="Speech Commands-layout folder (<word>/<clip>.wav|.flac)")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_fetch(args):
    import dataclasses

    from hark.training.fetch import DATASETS, FetchError, fetch
    archive = DATASETS[args.dataset]
    if args.url:
        archive = dataclasses.replace(archive, url=args.url)
    if args.sha256:
        archive = dataclasses.replace(archive, sha256=args.sha256.lower(), size=0)
    try:
        dest = fetch(archive, args.dest, keep_archive=args.keep_archive, retries=args.retries)
    except FetchError as exc:
        raise HarkError(str(exc)) from None
    print(f"{args.dataset}: {dest}\nuse it with: hark train --data {dest}")
    return 0


def run_info(args):
    from hark.training.dataset import LABELS, DatasetError, load_dataset, probe_clips
    try:
        ds = load_dataset(args.dir, require_labels=False)
    except DatasetError as exc:
        raise HarkError(str(exc)) from None
    unreadable, converted = probe_clips([c.path for c in ds.clips])
    bad_noise, _ = probe_clips(ds.noise_files)
    bad = {path for path, _ in unreadable}
    ds.clips = [c for c in ds.clips if c.path not in bad]
    splits = ("train", "validation", "test")
    by_word = {}
    for c in ds.clips:
        row = by_word.setdefault(c.word, {"label": c.label, **dict.fromkeys(splits, 0)})
        row[c.split] += 1
    print(f"{ds.root}: {len(ds.clips)} readable clips, {len(by_word)} words, "
          f"{len(ds.noise_files) - len(bad_noise)} background-noise files")
    for what, problems in (("clip", unreadable), ("background-noise file", bad_noise)):
        if problems:
            print(f"unreadable: {len(problems)} {what}(s), not counted (training skips them), "
                  f"e.g. {problems[0][0]}: {problems[0][1]}")
    if converted:
        print(f"not 16 kHz mono: {len(converted)} clip(s), resampled/downmixed when read "
              f"(the device hears 16 kHz mono), e.g. {converted[0]}")
    header = f"{'word':<16}{'label':<12}" + "".join(f"{s:>12}" for s in splits) + f"{'total':>9}"
    print(header)
    for word, row in sorted(by_word.items(), key=lambda kv: (-sum(kv[1][s] for s in splits), kv[0])):
        counts = [row[s] for s in splits]
        print(f"{word:<16}{row['label']:<12}" + "".join(f"{n:>12}" for n in counts)
              + f"{sum(counts):>9}")
    print("\nper label (the 12-class task; _silence_ is cut from background noise at training):")
    counts = ds.counts()
    labels = sorted({c.label for c in ds.clips}, key=lambda l: (LABELS + [l]).index(l))
    print(f"{'label':<12}" + "".join(f"{s:>12}" for s in splits))
    for label in labels:
        print(f"{label:<12}" + "".join(f"{counts.get(s, {}).get(label, 0):>12}" for s in splits))
    print(f"{'all':<12}" + "".join(f"{sum(counts.get(s, {}).values()):>12}" for s in splits))
    voices_csv = ds.root / "voices.csv"
    if voices_csv.exists():
        with open(voices_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        engines = sorted({r["engine"] for r in rows})
        print(f"\nsynthetic (voices.csv): {len({r['voice'] for r in rows})} voices from "
              f"{', '.join(engines)}; voice split "
              + ", ".join(f"{s} {sum(r['split'] == s for r in rows)}"
                          for s in sorted({r['split'] for r in rows})) + " clips")
        for engine in engines:
            licences = sorted({r.get("licence") or "not recorded" for r in rows if r["engine"] == engine})
            print(f"  {engine}: {sum(r['engine'] == engine for r in rows)} clips; "
                  f"licence {' | '.join(licences)}")
    return 0
