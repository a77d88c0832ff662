"""Enrolled words matched with their time structure (issue 16): subsequence dynamic time warping
over frame-level features, beside training/enroll_eval.py's pooled-embedding matcher and measured
with its protocols. With `--features mfcc` it is what the firmware does (firmware/enroll.py
trims by speech(), match.py runs dtw.py over every hop: the same integers, tests/test_enroll.py).

    python -m hark.training.enroll_dtw --model models/default.hark --features conv4 --out runs/dtw

Features, per hop as the device computes them (the firmware's streaming engine in the unix port):
`mfcc`, the front end's int8 frame (the streaming engine's input column), or `convN`, the newest
output column of the N-th temporal convolution (before pooling; each column sees the last
receptive-field frames). A template is one enrolled example's frames, trimmed to the speech
(speech(): by the MFCC c0, log energy), shifted by half the layer's receptive field. A stream is scored by subsequence DTW: a template may start at any hop,
each template frame is matched to one stream frame, the stream advancing 0, 1 or 2 frames
per template frame (never 0 twice running: the stream runs at 1/2 to 2 times the template's
speed); the distance at a hop is the best path's summed L1 frame distance divided by the template's
length, and the stream's score is its minimum over hops and templates. The word's threshold is
factor/16 x the examples' leave-one-out spread (the mean over examples of the best distance of
the other examples' templates to its stream), as enroll_eval's is of the pooled L1 spread.
`--frames` (richer_frames(), an experiment, not the firmware's) matches frames made from the
front end's log-mel stage instead (docs/enroll.md "Richer frames").
"""
import argparse
import functools
import itertools
import json
import types
import zlib
from pathlib import Path

import numpy as np

from . import dataset as ds
from . import enroll_eval as ee
from .blob import read_blob
from .blobmeta import header_crc

UNCAPPED_16 = 1000  # a spread factor that leaves the threshold to the cap
MIN_HOPS = 10       # the shortest template (0.2 s)
EDGE_HOPS = 3       # kept either side of the loud part: the softer consonants at its edges
INF = 1 << 40
SATURATED = 0x7FFF  # firmware/dtw.py's INF: its uint16 costs stop there
# the threshold calibrated at enrollment (calibrate(); firmware/enroll.py the same integers)
COHORT_PAD = 5      # a cohort clip: its speech() and this many hops either side
COHORT_SKIP = ("yes", "no", "up", "down", "left", "right", "stop", "go")  # the same-speaker words
CAL_RANK = 2        # the (CAL_RANK + 1)-th smallest cohort distance sets the threshold ...
CAL_FACTOR_32 = 24  # ... times this / 32 ...
CAL_CAP = 120       # ... at most this (per template frame)
FIXED = (90, 90, 90, 90, 100)   # firmware/enroll.py THRESHOLDS: without a cohort, by examples
# FIXED and CAL_CAP are int8 distances between frames at this input scale (the models' they were
# picked on, and esp32's and wide's; firmware/enroll.py the same): a model whose frames have
# another scale gets them scaled (scaled()). Unscaled, the default (0.0489) heard 30-75 % fewer
# enrolled words (docs/accuracy.md, *Real share 0.5 through the default's whole rule*).
CONSTANTS_INPUT_SCALE = 0.0562


def scaled(value, input_scale) -> int:
    """A distance picked on frames at CONSTANTS_INPUT_SCALE, for frames at input_scale."""
    return int(value * CONSTANTS_INPUT_SCALE / input_scale + 0.5)


def input_scale(model) -> float:
    """The model's input scale: the int8 step of its frames."""
    return read_blob(model)[0]["model"]["input"]["scale"]


def columns(model, paths, cache: Path = None) -> list:
    """Per clip, every hop's embedding and newest ring columns (tools/engine_batch.py), cached."""
    from hark.engine_batch import run_column_streams
    meta, arrays = read_blob(model)
    key = zlib.crc32((str(Path(model).read_bytes()[:16]) + "|".join(map(str, paths))).encode())
    f = cache / f"cols_{key:08x}.npz" if cache else None
    if f and f.exists():
        z = np.load(f)
        return np.split(z["e"], z["ends"][:-1])
    out = run_column_streams(model, [ee.clip_stream(p, meta, arrays) for p in paths])
    if f:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, e=np.concatenate(out), ends=np.cumsum([len(e) for e in out]))
    return out


def layout(model) -> dict:
    """{feature: (first byte, last byte + 1, receptive field in hops)} of a columns() row."""
    meta, arrays = read_blob(model)
    rings = arrays["p.s.rings"].reshape(-1, 7)
    at = meta["model"]["embedding"]["size"]
    rf = 1
    out = {}
    for i, (R, C) in enumerate(zip(rings[:, 1], rings[:, 3])):
        out["mfcc" if i == 0 else f"conv{i}"] = (at, at + int(C), rf)
        at += int(C)
        rf += int(R) - 1
    return out


def floor_of(c0) -> int:
    """The 10th percentile of c0, linear between the two nearest ranks, in integers (firmware/
    enroll.py computes the same)."""
    a = sorted(int(v) for v in c0)
    i, r = divmod((len(a) - 1) * 10, 100)
    return (a[i] * (100 - r) + a[min(i + 1, len(a) - 1)] * r) // 100


def speech(c0, silence: int) -> tuple:
    """(first, last + 1) hop of the utterance in a stream's hops (c0: their MFCC c0, log energy,
    offset form; firmware/enroll.py trims an example's slot by this rule, its parity test is in
    tests/test_enroll.py). Hops of digital silence (c0 == silence, the front end's value for
    all-zero samples: the padding around a recorded clip, never a microphone's) do not count. Of
    the others, those whose c0 clears their floor (floor_of) by a third of the way to the
    loudest, EDGE_HOPS more either side (within the hops that count); at least MIN_HOPS around
    the loudest."""
    c0 = [int(v) for v in c0]
    live = [j for j, v in enumerate(c0) if v != silence] or list(range(len(c0)))
    values = [c0[j] for j in live]
    floor, top = floor_of(values), max(values)
    loud = [j for j in live if c0[j] >= floor + (top - floor) // 3]
    lo, hi = max(live[0], loud[0] - EDGE_HOPS), min(live[-1] + 1, loud[-1] + 1 + EDGE_HOPS)
    if hi - lo < MIN_HOPS:
        lo = max(0, min(c0.index(top) - MIN_HOPS // 2, len(c0) - MIN_HOPS))
        hi = lo + MIN_HOPS
    return lo, hi


def _sdtw(frames, starts, ends, tmpl, tstarts, tends, out, squared):
    """out[c, m]: the smallest subsequence DTW cost (summed L1, or squared L2 if squared; not
    normalised) of template m (tmpl[tstarts[m]:tends[m]]) over clip c's hops
    frames[starts[c]:ends[c]]."""
    n_max = 1
    for m in range(len(tstarts)):
        n_max = max(n_max, tends[m] - tstarts[m])
    cur = np.empty((2, n_max), np.int64)       # [0]: reached by a stream step, [1]: by a 0 step
    prev = np.empty((2, n_max), np.int64)
    prev2 = np.empty((2, n_max), np.int64)
    dim = frames.shape[1]
    dist = np.empty(n_max, np.int64)
    for c in range(len(starts)):
        for m in range(len(tstarts)):
            t0 = tstarts[m]
            n = tends[m] - t0
            prev[:, :n] = INF
            prev2[:, :n] = INF
            best = INF
            for j in range(starts[c], ends[c]):
                for i in range(n):
                    dist[i] = 0
                    for k in range(dim):
                        v = frames[j, k] - tmpl[t0 + i, k]
                        dist[i] += v * v if squared else abs(v)
                for i in range(n):
                    d = dist[i]
                    if i == 0:
                        cur[0, 0] = d
                        cur[1, 0] = INF
                    else:
                        p = min(min(prev[0, i - 1], prev[1, i - 1]),
                                min(prev2[0, i - 1], prev2[1, i - 1]))
                        cur[0, i] = min(INF, p + d)
                        cur[1, i] = min(INF, cur[0, i - 1] + d)
                best = min(best, min(cur[0, n - 1], cur[1, n - 1]))
                prev, prev2, cur = cur, prev, prev2
            out[c, m] = best


@functools.cache
def _compiled():
    import numba
    return numba.njit(_sdtw)


def sdtw_cost(frames, starts, ends, tmpl, tstarts, tends, squared=False) -> np.ndarray:
    """(clips, templates) int64: _sdtw's cost (firmware/dtw.py's integers with L1; INF: no
    path)."""
    out = np.empty((len(starts), len(tstarts)), np.int64)
    _compiled()(frames, np.asarray(starts, np.int64), np.asarray(ends, np.int64), tmpl,
                np.asarray(tstarts, np.int64), np.asarray(tends, np.int64), out, squared)
    return out


def sdtw(frames, starts, ends, tmpl, tstarts, tends, squared=False) -> np.ndarray:
    """(clips, templates) normalised distances: the cost / template length."""
    return (sdtw_cost(frames, starts, ends, tmpl, tstarts, tends, squared)
            / (np.asarray(tends) - np.asarray(tstarts))[None, :])


def _cohort_threshold(cost, lens, keep, cap=CAL_CAP) -> int:
    """CAL_FACTOR_32/32 x the (CAL_RANK + 1)-th smallest, over cohort clips, of the nearest kept
    template's distance (cost x 16 // frames), at most cap, at least 1."""
    s = sorted(min(int(cost[c, t]) * 16 // int(lens[t]) for t in keep) for c in range(len(cost)))
    return max(1, min(cap, s[CAL_RANK] * CAL_FACTOR_32 // 512))


def calibrate(examples, cohort, cap=CAL_CAP, saturated=SATURATED, squared=False) -> tuple:
    """(kept examples' indices, the word's threshold per template frame) from the examples' frames
    (uint8, offset form) and the cohort clips' (read_cohort): a threshold from the templates'
    distances to other speakers' words (_cohort_threshold); a template that reaches no other
    example within it is dropped (an example that disagrees: noise, a cough), and the threshold
    set again from those kept (at least the one nearest another example is kept). cap, saturated
    and squared: the firmware's unless other frames are measured (CalibratedMatcher)."""
    if len(cohort) <= CAL_RANK:
        raise ValueError(f"a cohort needs more than {CAL_RANK} clips")
    lens = np.array([len(e) for e in examples])
    t_end = np.cumsum(lens)
    t_start = t_end - lens
    tmpl = np.concatenate(examples).astype(np.int64)
    c_len = np.array([len(c) for c in cohort])
    c_end = np.cumsum(c_len)
    cost = np.minimum(sdtw_cost(np.concatenate(cohort).astype(np.int64), c_end - c_len, c_end,
                                tmpl, t_start, t_end, squared), saturated)
    loo = np.minimum(sdtw_cost(tmpl, t_start, t_end, tmpl, t_start, t_end, squared), saturated)
    np.fill_diagonal(loo, saturated + 1)            # an example is not another example
    first = _cohort_threshold(cost, lens, range(len(examples)), cap)
    keep = [j for j in range(len(examples)) if loo[:, j].min() <= first * lens[j]]
    if not keep:
        near = [int(loo[:, j].min()) * 16 // int(lens[j]) for j in range(len(examples))]
        keep = [near.index(min(near))]
    return keep, _cohort_threshold(cost, lens, keep, cap)


COHORT_MAGIC = b"HKCO"
COHORT_HEAD = "<4sHHIIH"    # magic, version, frame width, model blob CRC, body CRC, clips


def write_cohort(path: Path, model, clips: list):
    """The cohort file firmware/enroll.py reads: COHORT_HEAD, then a u8 frame count per clip,
    then the clips' frames (offset form); the body CRC covers counts and frames."""
    import struct
    body = bytes(len(c) for c in clips) + b"".join(np.asarray(c, np.uint8).tobytes() for c in clips)
    crc_model = header_crc(model)
    Path(path).write_bytes(struct.pack(COHORT_HEAD, COHORT_MAGIC, 1, clips[0].shape[1], crc_model,
                                       zlib.crc32(body), len(clips)) + body)


def read_cohort(path: Path) -> list:
    """write_cohort's clips, uint8 (frames, width)."""
    import struct
    data = Path(path).read_bytes()
    magic, _, width, _, crc, n = struct.unpack_from(COHORT_HEAD, data)
    at = struct.calcsize(COHORT_HEAD)
    if magic != COHORT_MAGIC or zlib.crc32(data[at:]) != crc:
        raise SystemExit(f"{path} is not an intact hark cohort file; write it again (--write-cohort)")
    lens = np.frombuffer(data, np.uint8, n, at).astype(int)
    frames = np.frombuffer(data, np.uint8, offset=at + n).reshape(-1, width)
    return np.split(frames, np.cumsum(lens)[:-1])


def cohort_clips(bank, matcher) -> list:
    """The cohort the shipped file holds: every clip of the speakers on the picking half (half 0,
    whose other words' false accepts pick settings; the reports count half 1's) of words the
    same-speaker protocol does not enroll, each its speech() +- COHORT_PAD hops."""
    out = []
    for i in np.nonzero((bank.half == 0) & ~np.isin(bank.word, COHORT_SKIP))[0]:
        lo, hi = matcher.trim[i]
        lo, hi = max(matcher.starts[i], lo - COHORT_PAD), min(matcher.ends[i], hi + COHORT_PAD)
        out.append(matcher.frames[lo:hi])
    return out


def mel_stage(model, paths, cache: Path = None) -> list:
    """Per clip, every hop's log-mel bands, the device front end's stage before its DCT
    (device_features_numpy(stage="mel"), int32), rows as columns()'s (its first frame, the
    engine's warm-up, dropped); cached."""
    meta, arrays = read_blob(model)
    key = zlib.crc32(("mel" + str(Path(model).read_bytes()[:16]) + "|".join(map(str, paths))).encode())
    f = cache / f"mel_{key:08x}.npz" if cache else None
    if f and f.exists():
        z = np.load(f)
        return np.split(z["e"], z["ends"][:-1])
    out = [ee.clip_stream(p, meta, arrays, stage="mel")[1:] for p in paths]
    if f:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, e=np.concatenate(out), ends=np.cumsum([len(e) for e in out]))
    return out


def richer_frames(spec: str, mel: list, picking: np.ndarray, floor: int) -> list:
    """Per clip int64 frames from mel_stage()'s bands (an experiment, not the firmware's):
    `mel` every band, (log - floor) / 2^6 (1/8 of a log2 step: 0..252 on Speech Commands, a byte); `melN` N of
    them, evenly spaced; `cepK` the first K coefficients of the orthonormal DCT-II of the bands
    (1/8 log2 steps), `cepKn` those over their standard deviation on the picking half's frames
    (x 16: the model input's spread), as the model's input is; `:cos` after any of them: the
    frames centred on the picking half's mean, scaled to length 64 (squared L2 between them is
    then 2 x 64^2 x (1 - cosine))."""
    spec, _, cos = spec.partition(":")
    n_mels = mel[0].shape[1]
    rows = np.concatenate(mel).astype(np.int64)
    if spec.startswith("mel"):
        n = int(spec[3:] or n_mels)
        f = (rows[:, np.linspace(0, n_mels - 1, n).round().astype(int)] - floor) >> 6
    elif spec.startswith("cep"):
        k = int(spec[3:].rstrip("n"))
        j = np.arange(n_mels)
        dct = np.cos(np.pi / n_mels * (j[None, :] + 0.5) * np.arange(k)[:, None]) * np.sqrt(2 / n_mels)
        dct[0] /= np.sqrt(2)
        f = (rows @ np.round(dct * 256).astype(np.int64).T) >> 14
        if spec.endswith("n"):
            f = f * 16 // np.maximum(1, f[picking].std(axis=0).round().astype(np.int64))
    else:
        raise SystemExit(f"--frames {spec}: mel, melN, cepK or cepKn (optionally :cos)")
    if cos:
        c = f - f[picking].mean(axis=0)
        f = np.round(64 * c / np.maximum(1e-9, np.linalg.norm(c, axis=1, keepdims=True)))
    return np.split(f.astype(np.int64), np.cumsum([len(m) for m in mel])[:-1])


class DtwMatcher:
    """enroll_eval's matcher interface over one feature: score(enroll) -> (per clip distance,
    spread), threshold(spread, factor), clip_distances(enroll). frames (per clip, one row per
    hop of cols; richer_frames()) replace the feature's columns; squared: squared L2 for L1."""

    def __init__(self, bank, cols, model, feature, weights=None, frames=None, squared=False):
        lay = layout(model)
        if feature not in lay:
            raise SystemExit(f"--features {feature}: this model has {', '.join(lay)}")
        a, b, rf = lay[feature]
        m0 = lay["mfcc"][0]
        self.squared = squared
        if frames is not None:
            self.frames = np.ascontiguousarray(np.concatenate(frames), np.int64)
        else:
            self.frames = np.ascontiguousarray(np.concatenate(cols)[:, a:b]).astype(np.int32)
        if weights is not None:     # an experiment: L1 with integer weights per coefficient
            self.frames *= np.asarray(weights, np.int32)[None, :]
        self.ends = np.cumsum([len(h) for h in cols])
        self.starts = np.r_[0, self.ends[:-1]]
        self.trim = []          # per clip: its speech's hops in self.frames, for a template
        for s, e, h in zip(self.starts, self.ends, cols):
            lo, hi = speech(h[:, m0], int(h[-1, m0]))     # the last hop: the padding's silence
            shift = rf // 2
            self.trim.append((s + min(lo + shift, len(h) - 1), s + min(hi + shift, len(h))))
        self.bank = bank

    def _distances(self, enroll, clips):
        """(clips, examples): each example's template distance over each clip (a template's
        distances over every clip are computed once and kept: draws share examples)."""
        cache = self.__dict__.setdefault("_cache", {})
        todo = [int(i) for i in dict.fromkeys(enroll) if int(i) not in cache]
        if todo:
            ts, te = zip(*(self.trim[i] for i in todo))
            d = sdtw(self.frames, self.starts, self.ends, self.frames, ts, te, self.squared)
            cache.update((i, d[:, j]) for j, i in enumerate(todo))
        return np.stack([cache[int(i)][clips] for i in enroll], axis=1)

    def spread(self, enroll) -> float:
        """Mean over examples of the nearest other example's template distance to its stream."""
        d = self._distances(enroll, enroll)
        np.fill_diagonal(d, np.inf)
        return float(d.min(axis=1).mean())

    def score(self, enroll):
        return self._distances(enroll, np.arange(len(self.starts))).min(axis=1), self.spread(enroll)

    @staticmethod
    def threshold(spread, factor):
        return spread * factor / 16

    def clip_distances(self, enroll):
        return self.score(enroll)[0]


class CalibratedMatcher(DtwMatcher):
    """DtwMatcher whose templates and threshold are calibrate()'s (the firmware's): score's
    "spread" is the threshold itself, threshold() scales it by factor/16 (16: the firmware)."""

    def __init__(self, bank, cols, model, cohort, frames=None, squared=False):
        """cohort: read_cohort's clips, or None with frames: the same clips of those frames (in
        memory, uncapped and unsaturated: an experiment's scale is not the firmware's)."""
        super().__init__(bank, cols, model, "mfcc", frames=frames, squared=squared)
        self.cal = ({"cap": scaled(CAL_CAP, input_scale(model))} if cohort is not None
                    else {"cap": INF, "saturated": INF, "squared": squared})
        self.cohort = cohort if cohort is not None else cohort_clips(bank, self)

    def score(self, enroll):
        keep, thr = calibrate([self.frames[slice(*self.trim[i])] for i in enroll], self.cohort,
                              **self.cal)
        enroll = [enroll[j] for j in keep]
        return self._distances(enroll, np.arange(len(self.starts))).min(axis=1), thr

    def clip_distances(self, enroll):
        return self.score(enroll)[0]


class FixedMatcher(DtwMatcher):
    """The firmware without a cohort file: the threshold by the number of examples (FIXED, for
    the model's input scale)."""

    def __init__(self, bank, cols, model, feature, weights=None):
        super().__init__(bank, cols, model, feature, weights)
        self.fixed = [scaled(t, input_scale(model)) for t in FIXED]

    def score(self, enroll):
        d = self._distances(enroll, np.arange(len(self.starts))).min(axis=1)
        return d, self.fixed[min(len(enroll), len(self.fixed) - 1)]


def exhaustive(bank, matcher, words, ks=(3, 4), factor=16) -> dict:
    """Same-speaker enrollment without drawing: every speaker with more than k clips of a word,
    every k of their heard clips as the examples, the rest tested. Per half of the speakers (the
    enrolling speaker's; false accepts on that half's clips of the other words) and k: recall on
    the further clips, mean ± sd over speaker-word pairs (each the mean over its sets), false
    accepts per hour, mean and median over pairs."""
    rows = []
    for word in words:
        idx = np.nonzero(bank.word == word)[0]
        for spk in np.unique(bank.speaker[idx]):
            mine = idx[bank.speaker[idx] == spk]
            h = int(bank.half[mine[0]])
            neg = (bank.word != word) & (bank.half == h)
            hours = bank.seconds[neg].sum() / 3600
            for k in ks:
                sets = list(itertools.combinations(mine[bank.heard[mine]], k)) if len(mine) > k else []
                got = []
                for e in sets:
                    d, spread = matcher.score(list(e))
                    fire = d <= matcher.threshold(spread, factor)
                    # the best any threshold of this set could do: below its (hours + 1)-th
                    # nearest other word (<= 1 false accept per hour)
                    best = d < np.sort(d[neg])[int(hours)]
                    tests = np.setdiff1d(mine, e)
                    got.append((fire[tests].mean(), fire[neg].sum() / hours, best[tests].mean()))
                if got:
                    rows.append({"word": word, "speaker": str(spk), "half": h, "k": k,
                                 "sets": len(got), "recall": float(np.mean([g[0] for g in got])),
                                 "fa_per_hour": float(np.mean([g[1] for g in got])),
                                 "oracle_recall": float(np.mean([g[2] for g in got]))})
    table = []
    for h in (0, 1):
        for k in ks:
            sel = [r for r in rows if r["half"] == h and r["k"] == k]
            if not sel:
                continue
            rec = np.array([r["recall"] for r in sel])
            fa = np.array([r["fa_per_hour"] for r in sel])
            table.append({"half": h, "k": k, "pairs": len(sel), "sets": sum(r["sets"] for r in sel),
                          "recall": float(rec.mean()), "recall_sd": float(rec.std()),
                          "fa_per_hour": float(fa.mean()), "fa_per_hour_median": float(np.median(fa)),
                          "oracle_recall": float(np.mean([r["oracle_recall"] for r in sel]))})
    return {"factor": factor, "table": table, "rows": rows}


def exhaustive_markdown(result, name) -> str:
    lines = [f"**{name}, every set of k examples of one speaker** (factor {result['factor']}/16)",
             "", "| speakers | examples | pairs (sets) | recall, further clips | false accepts / h "
             "(mean, median) | best threshold per set: recall |", "|---|---|---|---|---|---|"]
    for t in result["table"]:
        lines.append(f"| half {t['half']} | {t['k']} | {t['pairs']} ({t['sets']}) | "
                     f"{100 * t['recall']:.1f} ± {100 * t['recall_sd']:.1f} % | "
                     f"{t['fa_per_hour']:.2f}, {t['fa_per_hour_median']:.2f} | "
                     f"{100 * t['oracle_recall']:.1f} % |")
    return "\n".join(lines) + "\n"


class Capped:
    """A matcher whose threshold is at most `cap` whatever the spread (0: no cap); its scores are
    kept, so the protocols run again with another cap at little cost."""

    def __init__(self, matcher):
        self.matcher = matcher
        self.cap = 0
        self._scores = {}

    def score(self, enroll):
        key = tuple(enroll)
        if key not in self._scores:
            d, spread = self.matcher.score(enroll)
            self._scores[key] = (np.asarray(d, np.float32), spread)
        return self._scores[key]

    def threshold(self, spread, factor):
        t = self.matcher.threshold(spread, factor)
        return min(t, self.cap) if self.cap else t

    def clip_distances(self, enroll):
        return self.matcher.clip_distances(enroll)


def capped(bank, matcher, model, factors, caps, n_draws, seed) -> dict:
    """run_protocols once per cap (with factor UNCAPPED_16 as well: threshold = cap for almost
    every draw); per protocol and number of examples (a board knows how many it took), the
    largest cap whose mean false accepts per hour on the picking half at that factor are <= 1
    (the smallest cap if none is), with its picked factor and table."""
    per_cap = {}
    matcher = Capped(matcher)
    for cap in caps:
        matcher.cap = cap
        per_cap[cap] = ee.run_protocols(bank, matcher, model, factors + [UNCAPPED_16], n_draws, seed)

    def fa(cap, name, k):
        return ee.summarise(per_cap[cap]["protocols"][name]["rows"], int(k),
                            UNCAPPED_16)["fa_per_hour_pick"][0]
    result = dict(per_cap[caps[0]], protocols={})
    for name, part in per_cap[caps[0]]["protocols"].items():
        out = dict(part, table=[], rows=[], picked={}, cap={})
        for k in part["picked"]:
            ok = [c for c in caps if c and fa(c, name, k) <= 1]
            cap = max(ok) if ok else min(c for c in caps if c)
            chosen = per_cap[cap]["protocols"][name]
            out["cap"][k] = cap
            out["picked"][k] = chosen["picked"][k]
            out["table"] += [r for r in chosen["table"] if r["k"] == int(k)]
            out["rows"] += [r for r in chosen["rows"] if r["k"] == int(k)]
        result["protocols"][name] = out
    result["caps"] = {str(c): {n: {k: fa(c, n, k) for k in p["picked"]}
                               for n, p in r["protocols"].items()} for c, r in per_cap.items()}
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default.hark")
    ap.add_argument("--data", default="../shared/data/speech_commands")
    ap.add_argument("--features", default="conv4", help="mfcc or convN (N-th temporal layer)")
    ap.add_argument("--out", type=Path, default=Path("runs/enroll_dtw"))
    ap.add_argument("--cache", type=Path, help="columns cache folder (default OUT/cache)")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factors", default="4,6,8,10,12,14,16,18,20,24")
    ap.add_argument("--caps", default="0",
                    help="thresholds to cap at (0: none); per protocol and k the largest cap "
                         "whose false accepts on the picking half are <= 1/h at threshold = cap")
    ap.add_argument("--pooled", action="store_true",
                    help="the pooled-embedding L1 matcher instead (enroll_eval's), same draws")
    ap.add_argument("--calibrate", type=Path, metavar="COHORT",
                    help="DTW over mfcc with the firmware's calibrated threshold (calibrate()) "
                         "from this cohort file; factor 16 is the firmware's")
    ap.add_argument("--fixed", action="store_true",
                    help="DTW over mfcc with the firmware's thresholds without a cohort (FIXED)")
    ap.add_argument("--weights", help="--fixed: integer weights of the frame's coefficients in "
                    "the L1 distance (an experiment; the firmware weighs them all 1)")
    ap.add_argument("--frames", metavar="SPEC",
                    help="DTW over richer frames from the front end's log-mel stage instead "
                         "(richer_frames(): mel, melN, cepK, cepKn, optionally :cos); with "
                         "--calibrate, its cohort's clips of those frames (the file's name only "
                         "says to calibrate)")
    ap.add_argument("--squared", action="store_true",
                    help="--frames: squared L2 frame distance instead of L1")
    ap.add_argument("--exhaustive", action="store_true",
                    help="only exhaustive(): every set of k examples of one speaker, per half")
    ap.add_argument("--write-cohort", type=Path, metavar="PATH",
                    help="write the cohort file (cohort_clips()) for --model and stop; the board "
                         "reads it beside its model (models/default.cohort for default.hark)")
    args = ap.parse_args(argv)
    caps = [float(c) for c in args.caps.split(",")]
    d = ds.load_dataset(args.data)
    clips = d.clips
    cols = columns(args.model, [c.path for c in clips], cache=args.cache or args.out / "cache")
    size = read_blob(args.model)[0]["model"]["embedding"]["size"]
    bank = ee.Bank(clips, [h[:, :size] for h in cols])
    if args.write_cohort:
        clips = cohort_clips(bank, DtwMatcher(bank, cols, args.model, "mfcc"))
        write_cohort(args.write_cohort, args.model, clips)
        print(f"{args.write_cohort}: {len(clips)} clips, {sum(map(len, clips))} frames")
        return 0
    if args.frames:
        fe = read_blob(args.model)[0]["frontend"]
        floor = (fe["log_floor"] - fe["log_centre"] + (1 << (fe["dct_in_shift"] - 1))) >> fe["dct_in_shift"]
        mel = mel_stage(args.model, [c.path for c in clips], cache=args.cache or args.out / "cache")
        frames = richer_frames(args.frames, mel, np.repeat(bank.half == 0, [len(m) for m in mel]),
                               floor)
        squared = args.squared or args.frames.endswith(":cos")
        if args.calibrate:
            matcher = CalibratedMatcher(bank, cols, args.model, None, frames, squared)
        else:
            matcher = DtwMatcher(bank, cols, args.model, "mfcc", frames=frames, squared=squared)
        name = f"DTW over {args.frames}" + (", squared L2" if squared else "") + (
            ", calibrated" if args.calibrate else "")
    elif args.pooled:
        matcher, name = bank, "pooled L1"
    elif args.calibrate:
        matcher = CalibratedMatcher(bank, cols, args.model, read_cohort(args.calibrate))
        name = "DTW over mfcc, calibrated"
    elif args.fixed:
        weights = [int(w) for w in args.weights.split(",")] if args.weights else None
        matcher = FixedMatcher(bank, cols, args.model, "mfcc", weights)
        name = "DTW over mfcc, fixed" + (f", weights {args.weights}" if weights else "")
    else:
        matcher = DtwMatcher(bank, cols, args.model, args.features)
        name = f"DTW over {args.features}"
    factors = [int(f) for f in args.factors.split(",")]
    if args.exhaustive:
        words = ee.protocols_for(bank, set(read_blob(args.model)[0]["labels"]))["same_speaker"][1]
        args.out.mkdir(parents=True, exist_ok=True)
        kept = functools.cache(lambda e, score=matcher.score: score(list(e)))   # same sets each factor
        matcher = types.SimpleNamespace(score=lambda e: kept(tuple(e)), threshold=matcher.threshold)
        for f in factors:
            result = exhaustive(bank, matcher, words, factor=f)
            (args.out / f"exhaustive_{f}.json").write_text(json.dumps(result, indent=1))
            print(exhaustive_markdown(result, name))
        return 0
    if len(caps) == 1 and not caps[0]:
        result = ee.run_protocols(bank, matcher, args.model, factors, args.draws, args.seed)
    else:
        result = capped(bank, matcher, args.model, factors, caps, args.draws, args.seed)
    result["matcher"] = name + (" capped" if any(caps) else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "enroll_eval.json").write_text(json.dumps(result, indent=1))
    md = ee.markdown(result)
    (args.out / "enroll_eval.md").write_text(md)
    print(md)
    print(f"per-clip: {100 * result['per_clip_recall_at_1pct']['mean']:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
