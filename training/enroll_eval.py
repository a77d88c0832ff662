"""Benchmark of on-device enrollment (issue 16): words the model has no class for, enrolled from
a few clips. This module holds the protocols, draws and false-accept counting, and the pooled-
embedding matcher the firmware used before DTW (kept as the comparison: nearest template on
the model's embedding); training/enroll_dtw.py holds the DTW matcher the firmware now runs.

    python -m hark.training.enroll_eval --model models/default.hark --data DATA --out runs/enroll

Every clip is streamed as the device hears it (digital silence, the clip, 1 s of silence) through
the device front end (bit-exact numpy, training/frontend_tables.py) and the firmware's own
streaming engine in the unix port (tools/engine_batch.py): the embedding after every hop.
Like the board (firmware/enroll.py), it takes no clip whose largest embedding mass does not
clear silence's by MARGIN_PCT. The pooled matcher keeps, per example, the hop with the largest
embedding mass; a clip is detected when any of its hops is within the word's threshold of a
template (L1 distance on the int8 embedding), the threshold calibrated from the examples'
spread (spread factor / 16 x the mean distance to the nearest other example). The spread
factor is chosen on the negatives of half the speakers (at <= 1 false accept per hour) and
false accepts are counted on the other half.
"""
import argparse
import functools
import json
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from . import dataset as ds
from .blob import read_blob
from .frontend_tables import device_features_numpy

PAD_S = 1.0
RATE = 16000
MARGIN_PCT = 25     # firmware/enroll.py
NOVEL = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")


def clip_stream(path, meta, arrays, pad_s=PAD_S, stage="mfcc") -> np.ndarray:
    """int8 feature frames of digital silence (the first frame, the runtime's warm-up), the clip
    and pad_s of silence, as the device front end computes them (stage: device_features_numpy's)."""
    pcm = sf.read(str(path), dtype="int16")[0]
    n_fft = meta["frontend"]["n_fft"]
    x = np.concatenate([np.zeros(n_fft, np.int16), pcm, np.zeros(int(pad_s * RATE), np.int16)])
    return device_features_numpy(x, meta, arrays, stage=stage)


def embeddings(model, paths, cache: Path = None, progress=None) -> list:
    """Per clip, the firmware's embedding after every hop (uint8 offset form)."""
    from hark.engine_batch import run_embedding_streams
    meta, arrays = read_blob(model)
    key = zlib.crc32((str(Path(model).read_bytes()[:16]) + "|".join(map(str, paths))).encode())
    if cache:
        f = cache / f"emb_{key:08x}.npz"
        if f.exists():
            z = np.load(f)
            return np.split(z["e"], z["ends"][:-1])
    streams = [clip_stream(p, meta, arrays) for p in paths]
    out = run_embedding_streams(model, streams, progress=progress)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, e=np.concatenate(out), ends=np.cumsum([len(e) for e in out]))
    return out


def template_of(hops: np.ndarray) -> np.ndarray:
    """The hop of one utterance with the largest embedding mass (sum of the offset-form bytes,
    i.e. of the post-ReLU activations): what firmware/enroll.py checks against the room's."""
    return hops[int(np.argmax(hops.astype(np.int32).sum(axis=1)))]


def l1(a, b):
    return np.abs(a.astype(np.int32)[..., None, :] - b.astype(np.int32)[None, :, :]).sum(-1)


def spread(templates: np.ndarray) -> int:
    """The mean over examples of the L1 distance to the nearest other example."""
    d = l1(templates, templates)
    np.fill_diagonal(d, 1 << 30)
    return int(d.min(axis=1).mean())


def half_of(clip) -> int:
    """Speakers split in two halves (by a hash of the speaker id): 0 picks the spread factor, 1
    reports."""
    return zlib.crc32(clip.path.name.split("_")[0].encode()) & 1


class Bank:
    """Every clip's per-hop embeddings, min distances computed in chunks."""

    def __init__(self, clips, hops):
        self.clips = clips
        self.ends = np.cumsum([len(h) for h in hops])
        self.hops = np.concatenate(hops).astype(np.int16)
        self.word = np.array([c.word for c in clips])
        self.speaker = np.array([c.path.name.split("_")[0] for c in clips])
        self.half = np.array([half_of(c) for c in clips])
        self.seconds = np.array([sf.info(str(c.path)).duration for c in clips])
        self.templates = [template_of(h) for h in hops]     # each clip's own enrollment hop
        # firmware/enroll.py refuses an example whose mass does not clear the room's (here
        # digital silence, every stream's first hop) by MARGIN_PCT: such a clip is not enrolled
        room = int(hops[0][0].astype(np.int32).sum())
        self.heard = np.array([int(t.astype(np.int32).sum()) > room * (100 + MARGIN_PCT) // 100
                               for t in self.templates])

    # the matcher interface evaluate() and per_clip() use (training/enroll_dtw.py has another)
    def score(self, enroll):
        """(per clip best distance, spread) for the examples `enroll` (clip indices)."""
        t = np.stack([self.templates[i] for i in enroll])
        return self.best(t), spread(t)

    @staticmethod
    def threshold(spread_, spread_16):
        return max(1, min(0xFFFF, spread_ * spread_16 // 16))

    def clip_distances(self, enroll):
        """Per clip, the L1 distance of its enrollment hop to the nearest of enroll's (the
        issue's per-clip protocol)."""
        t_all = np.stack(self.templates).astype(np.int32)
        return np.abs(t_all[:, None, :] - t_all[enroll][None]).sum(-1).min(1)

    def best(self, templates: np.ndarray) -> np.ndarray:
        """Per clip, the smallest L1 distance of any of its hops to any template."""
        return np.minimum.reduceat(nearest(self.hops, templates.astype(np.int16)),
                                   np.r_[0, self.ends[:-1]])


def _nearest(hops, templates):
    """Per hop, the L1 distance to the nearest template (compiled: the benchmark computes it
    for ~0.7 M hops per draw, ten times faster than numpy's broadcast)."""
    out = np.empty(hops.shape[0], np.int32)
    for i in range(hops.shape[0]):
        best = 1 << 30
        for j in range(templates.shape[0]):
            s = 0
            for c in range(hops.shape[1]):
                d = np.int32(hops[i, c]) - np.int32(templates[j, c])
                s += d if d > 0 else -d
            best = min(best, s)
        out[i] = best
    return out


@functools.cache
def _compiled():
    import numba     # librosa's dependency
    return numba.njit(_nearest)


def nearest(hops, templates):
    return _compiled()(hops, templates)


def draws(bank, word, k, n_draws, rng, same_speaker):
    """(enrollment clip indices, test indices) per draw: k clips of one speaker (same_speaker) or
    of k different speakers; tests are the word's other clips (of that speaker, or of others)."""
    idx = np.nonzero(bank.word == word)[0]
    ok = idx[bank.heard[idx]]       # clips the board would accept as examples
    out = []
    if same_speaker:
        spk = [s for s in np.unique(bank.speaker[idx]) if (bank.speaker[ok] == s).sum() >= k
               and (bank.speaker[idx] == s).sum() > k]
        for _ in range(n_draws):
            if not spk:
                break
            s = spk[rng.integers(len(spk))]
            enroll = rng.permutation(ok[bank.speaker[ok] == s])[:k]
            mine = idx[(bank.speaker[idx] == s) & ~np.isin(idx, enroll)]
            out.append((enroll, mine, idx[bank.speaker[idx] != s]))
    else:
        for _ in range(n_draws):
            first = {}          # one clip per speaker, in a random order
            for i in rng.permutation(ok):
                first.setdefault(bank.speaker[i], i)
            if len(first) <= k:
                break
            enroll = np.array(list(first.values())[:k])
            spk = set(bank.speaker[enroll])
            out.append((enroll, np.array([], int),
                        idx[[bank.speaker[i] not in spk for i in idx]]))
    return out


def evaluate(bank, words, ks, n_draws, factors, seed, same_speaker, matcher=None):
    """Per (k, factor): recall on the same speaker's and other speakers' clips and false accepts
    per hour on each half of the other words' speakers, over words x draws (matcher: bank's
    pooled L1 by default)."""
    matcher = matcher or bank
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        for word in words:
            for enroll_idx, same, other in draws(bank, word, k, n_draws, rng, same_speaker):
                best, spread_ = matcher.score(enroll_idx)
                neg = bank.word != word
                for f in factors:
                    thr = matcher.threshold(spread_, f)
                    fire = best <= thr
                    row = {"k": k, "word": word, "factor": f, "threshold": thr,
                           "recall_same": float(fire[same].mean()) if len(same) else None,
                           "recall_other": float(fire[other].mean()) if len(other) else None}
                    for h in (0, 1):
                        m = neg & (bank.half == h)
                        row[f"fa_per_hour_{h}"] = float(fire[m].sum() / (bank.seconds[m].sum() / 3600))
                    rows.append(row)
    return rows


def per_clip(bank, words, k, n_draws, seed, fa=0.01, matcher=None) -> dict:
    """The issue's protocol, for comparison: one distance per clip (pooled: the hop enrollment
    keeps, nearest-template L1), k examples from different speakers, the threshold at `fa` of the
    other words' clips; mean recall on the word's other clips, per word and overall."""
    matcher = matcher or bank
    rng = np.random.default_rng(seed)
    out = {}
    for word in words:
        rec = []
        for enroll, _, other in draws(bank, word, k, n_draws, rng, False):
            d = matcher.clip_distances(enroll)
            thr = np.quantile(d[bank.word != word], fa)
            rec.append(float((d[other] < thr).mean()))
        out[word] = float(np.mean(rec))
    out["mean"] = float(np.mean(list(out.values())))
    return out


def summarise(rows, k, factor):
    sel = [r for r in rows if r["k"] == k and r["factor"] == factor]

    def stat(key):
        v = np.array([r[key] for r in sel if r[key] is not None], float)
        return (float(v.mean()), float(v.std()), len(v)) if len(v) else (None, None, 0)
    return {"k": k, "factor": factor, "draws": len(sel), "recall_same": stat("recall_same"),
            "recall_other": stat("recall_other"), "fa_per_hour_pick": stat("fa_per_hour_0"),
            "fa_per_hour": stat("fa_per_hour_1"),
            "fa_per_hour_median": float(np.median([r["fa_per_hour_1"] for r in sel]))}


def pick_factor(rows, k, factors, max_fa=1.0):
    """The largest spread factor whose mean false accepts per hour on the picking half is <=
    max_fa (the smallest factor if none is)."""
    ok = [f for f in factors if summarise(rows, k, f)["fa_per_hour_pick"][0] <= max_fa]
    return max(ok) if ok else min(factors)


def _pct(s):
    return "-" if s[0] is None else f"{100 * s[0]:.1f} ± {100 * s[1]:.1f}"


def _fa(s):
    return "-" if s[0] is None else f"{s[0]:.1f} ± {s[1]:.1f}"


def markdown(result) -> str:
    lines = []
    for name, part in result["protocols"].items():
        lines += [f"**{part['title']}** ({part['words']})", "",
                  "| examples | spread factor | draws | recall, same speaker | recall, other speakers "
                  "| false accepts / h | median FA / h |", "|---|---|---|---|---|---|---|"]
        for s in part["table"]:
            mark = " (picked)" if s["factor"] == part["picked"].get(str(s["k"])) else ""
            lines.append(f"| {s['k']} | {s['factor']}/16{mark} | {s['draws']} | {_pct(s['recall_same'])} "
                         f"| {_pct(s['recall_other'])} | {_fa(s['fa_per_hour'])} "
                         f"| {s['fa_per_hour_median']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def compare(outs, shipped_factor=10) -> str:
    """A column per benchmark folder (its enroll_eval.json, and the run's metrics.json beside the
    model if there is one): its matcher, recall and false accepts per hour (mean, median) at the
    pooled L1 matcher's spread factor of the firmware before DTW, recall at the picked factor
    (<= 1 FA/h on the picking half), the per-clip protocol and the 12-class dev test accuracy."""
    columns = []
    for out in outs:
        if not (Path(out) / "enroll_eval.json").exists():
            raise SystemExit(f"{out}: no enroll_eval.json; run the benchmark with --out {out} first")
        result = json.loads((Path(out) / "enroll_eval.json").read_text())
        run = Path(result["model"]).parent / "metrics.json"
        col = {"matcher": result.get("matcher", "pooled L1"),
               "12-class accuracy, dev test": (
            f"{100 * json.loads(run.read_text())['float_test']['accuracy']:.1f} %"
            if run.exists() else "-")}
        for name, part in result["protocols"].items():
            key = "recall_other" if name == "novel" else "recall_same"
            for s in part["table"]:
                if s["factor"] == shipped_factor and col["matcher"] == "pooled L1":
                    col[f"{name}, {s['k']} examples: recall at {shipped_factor}/16 (FA/h mean, "
                        f"median)"] = (f"{_pct(s[key])} ({s['fa_per_hour'][0]:.0f}, "
                                       f"{s['fa_per_hour_median']:.0f})")
            for k, f in part["picked"].items():
                s = next(s for s in part["table"] if s["k"] == int(k) and s["factor"] == f)
                col[f"{name}, {k} examples: recall at <= 1 FA/h (factor, FA/h)"] = (
                    f"{_pct(s[key])} ({f}/16, {s['fa_per_hour'][0]:.1f})")
        col["per-clip protocol, 5 examples, 1 % FA"] = (
            f"{100 * result['per_clip_recall_at_1pct']['mean']:.1f} %")
        columns.append((Path(out).name, col))
    names = list(dict.fromkeys(k for _, col in columns for k in col))
    lines = ["| | " + " | ".join(n for n, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(col.get(k, "-") for _, col in columns) + " |" for k in names]
    return "\n".join(lines)


def footprint(model, clips, board="pyboard", words=3) -> dict:
    """RAM and flash per enrolled word on a 32-bit Cortex-M4F (QEMU, tools/qemu.py): live heap and
    instructions per hop while listening with 0, 1 and `words` words of len(clips) examples each
    (enrolled in the unix port, the same clips under other names; the file is the same on every
    port), and the file's size; and the instructions to enroll one word from the clips, with the
    model's cohort file (the threshold calibrated) and without it."""
    import shutil
    import tempfile

    from hark import boards
    from hark.deploy import COHORT_NAME, cohort_beside
    from hark.qemu import Image
    from hark.unixport import enrollment_audio, run_enroll
    out = {"examples": len(clips), "board": board, "words": words}
    with tempfile.TemporaryDirectory() as tmp:
        # the listening words: every example kept (a model without a cohort beside it; what a
        # hop costs depends on the template frames, not on the threshold)
        shutil.copyfile(model, Path(tmp) / "plain.hark")
        sf.write(str(Path(tmp) / "enroll.wav"), enrollment_audio(clips), RATE, subtype="PCM_16")
        files = {"enroll.wav": Path(tmp) / "enroll.wav", "nocohort.hark": Path(model)}
        cohort = cohort_beside(model)
        if cohort:
            files[COHORT_NAME] = cohort
        path = Path(tmp) / "enrolled.bin"
        for n in range(words):
            said = run_enroll(Path(tmp) / "plain.hark", boards.load("unix"), clips, f"word{n + 1}",
                              path)
            out["frames"] = said.split(" frames,")[0].rsplit(" ", 1)[1]
            if n + 1 in (1, words):
                files[f"w{n + 1}.bin"] = Path(tmp) / f"w{n + 1}.bin"
                files[f"w{n + 1}.bin"].write_bytes(path.read_bytes())
                out[f"file_bytes_{n + 1}"] = path.stat().st_size
        with Image(model, boards.load(board), clips[0], files=files) as im:
            for n in (0, 1, words):
                name = f"w{n}.bin"
                r = im.run(256 * 1024, stats=True, more=["--enrolled", name])
                # instructions from a run without --stats, whose per-stage timing costs its own
                # (as qemu.measure counts them)
                plain = im.run(256 * 1024, more=["--enrolled", name])
                base = im.run(256 * 1024, wav="empty.wav", pad_ms=0, more=["--enrolled", name])
                out[f"heap_live_{n}"] = r.stats["heap_live"]
                out[f"insns_per_hop_{n}"] = round((plain.stats["done.main_insns"]
                                                   - base.stats["done.main_insns"]) / r.stats["frames"])
                out[f"detections_{n}"] = r.detections
            for name in ("model", "nocohort"):
                r = im.run(256 * 1024, wav="enroll.wav", more=[
                    "--model", name + ".hark", "--enroll", "new", "--examples", str(len(clips)),
                    "--enrolled", "new.bin"])
                out[f"enroll_insns_{name}"] = r.stats["done.main_insns"]
                out[f"enroll_saved_{name}"] = [ln for ln in r.out.splitlines()
                                               if ln.startswith("enroll: saved")]
    k = words - 1
    out["ram_per_word"] = (out[f"heap_live_{words}"] - out["heap_live_1"]) // k
    out["ram_first_word"] = out["heap_live_1"] - out["heap_live_0"]
    out["flash_per_word"] = (out[f"file_bytes_{words}"] - out["file_bytes_1"]) // k
    out["insns_per_hop_per_word"] = (out[f"insns_per_hop_{words}"] - out["insns_per_hop_1"]) // k
    out["insns_per_hop_first_word"] = out["insns_per_hop_1"] - out["insns_per_hop_0"]
    return out


def protocols_for(bank, labels) -> dict:
    """{name: (title, words, examples, same speaker)}: the words the model has no class for, from
    other speakers; the plentiful command words, same speaker, split into those the model was
    trained on (an upper bound) and those it never heard (a model trained with --unseen-words)."""
    novel = [w for w in NOVEL if (bank.word == w).sum() >= 6]
    plentiful = [w for w in ("yes", "no", "up", "down", "left", "right", "stop", "go")
                 if (bank.word == w).sum() > 100]
    protocols = {
        "novel": ("Words the model has no class for, examples from different speakers (this data "
                  "has one clip per speaker of these words)", novel, (3, 5), False),
        "same_speaker": ("Same-speaker enrollment, ablation on command words (speakers with more "
                         "than k clips; the model WAS trained on these words: an upper bound)",
                         [w for w in plentiful if w in labels], (3, 4), True),
        "same_speaker_unseen": ("Same-speaker enrollment of plentiful words the model never heard "
                                "(ablation: trained with --unseen-words; speakers with more than k "
                                "clips)", [w for w in plentiful if w not in labels], (3, 4), True)}
    return {k: v for k, v in protocols.items() if v[1]}


def run_protocols(bank, matcher, model, factors, n_draws, seed) -> dict:
    """Every protocol of protocols_for with `matcher` (bank, or training/enroll_dtw.py's): the
    result enroll_eval.json holds."""
    neg_hours = {str(h): float(bank.seconds[bank.half == h].sum() / 3600) for h in (0, 1)}
    protocols = protocols_for(bank, set(read_blob(model)[0]["labels"]))
    if "novel" not in protocols:
        raise SystemExit(f"none of {', '.join(NOVEL)} has 6 clips in the data; the benchmark "
                         "enrolls them")
    result = {"model": str(model), "negatives_hours": neg_hours, "protocols": {}}
    for name, (title, words, ks, same) in protocols.items():
        rows = evaluate(bank, words, ks, n_draws, factors, seed, same, matcher)
        picked = {str(k): pick_factor(rows, k, factors) for k in ks}
        result["protocols"][name] = {
            "title": title, "words": ", ".join(words), "picked": picked,
            "table": [summarise(rows, k, f) for k in ks for f in factors], "rows": rows}
    result["per_clip_recall_at_1pct"] = per_clip(bank, protocols["novel"][1], 5, n_draws, seed,
                                                 matcher=matcher)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default.hark")
    ap.add_argument("--data", default="../shared/data/speech_commands")
    ap.add_argument("--out", type=Path, default=Path("runs/enroll"))
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factors", default="2,3,4,6,8,10,12,16,20")
    ap.add_argument("--footprint", action="store_true",
                    help="only measure RAM, flash and instructions per enrolled word in QEMU")
    ap.add_argument("--compare", nargs="+", type=Path, metavar="OUT",
                    help="only tabulate earlier results (--out folders of several models)")
    args = ap.parse_args(argv)
    if args.compare:
        print(compare(args.compare))
        return 0
    d = ds.load_dataset(args.data)
    if args.footprint:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:    # the firmware reads WAV files
            clips = []
            for c in sorted(c.path for c in d.clips if c.word == "marvin")[:4]:
                clips.append(Path(tmp) / (c.stem + ".wav"))
                sf.write(str(clips[-1]), sf.read(str(c), dtype="int16")[0], RATE, subtype="PCM_16")
            fp = footprint(args.model, clips)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "footprint.json").write_text(json.dumps(fp, indent=1))
        print(json.dumps(fp, indent=1))
        return 0
    clips = d.clips
    hops = embeddings(args.model, [c.path for c in clips], cache=args.out / "cache", progress=None)
    bank = Bank(clips, hops)
    factors = [int(f) for f in args.factors.split(",")]
    result = run_protocols(bank, bank, args.model, factors, args.draws, args.seed)
    clip = result["per_clip_recall_at_1pct"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "enroll_eval.json").write_text(json.dumps(result, indent=1))
    md = markdown(result) + (
        "\nPer-clip protocol (one embedding per clip at the hop enrollment keeps, 5 examples from "
        "different speakers, threshold at 1 % of the other words' clips): mean recall "
        f"{100 * clip['mean']:.1f} % (" + ", ".join(f"{w} {100 * v:.0f} %" for w, v in clip.items()
                                                    if w != "mean") + ").\n")
    (args.out / "enroll_eval.md").write_text(md)
    print(md)
    neg_hours = result["negatives_hours"]
    print(f"negatives: {neg_hours['0']:.2f} h (picking half), {neg_hours['1']:.2f} h (reported half)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
