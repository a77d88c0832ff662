"""Enrollment: a user teaches the board a new word by saying it a few times (issue 16).

    import enroll; enroll.enroll("marvin", 4)     # at the REPL; or `hark enroll --board B --word marvin`
    enroll.show(); enroll.delete("marvin")

The board prints a prompt per example (and blinks the profile's LED) and listens for SLOT_MS,
keeping the slot's front-end frames (the features the listening path computes anyway). Before
the first prompt it listens AMBIENT_MS to the room; an example whose loudest hop (the model's
embedding mass, engine .embedding: the hop whose window holds most of the word, no separate
voice detector needed) does not clear the room's by MARGIN_PCT is refused and asked again. Of a
heard slot it keeps the word's frames (trim(): by the MFCC c0, log energy) as a template;
match.py finds the templates in the stream by subsequence DTW (dtw.py). The word's threshold,
a DTW distance per template frame, is calibrated (calibrate()) from the templates' distances to
a cohort of other speakers' words, a file beside the model (model.cohort for model.hark,
training/enroll_dtw.py --write-cohort); an example that reaches none of the others within it is
dropped. Without that file: THRESHOLDS[examples], the fixed rule measured before
(docs/enroll.md "Calibrated at enrollment"). Both are scaled to the model's input scale
(scaled()).

Words live in one file (enrolled.bin) with a CRC-32 and the CRC of the model blob they were
recorded with; it is written to a temporary file and renamed over the old one, so a failed or
interrupted enrollment leaves the previous set intact. Only enroll mode imports this module; the
file's format and reader are in enrolled.py, which start-up uses.
"""
import struct

from enrolled import MAGIC, VERSION, _HEAD, crc32, model_crc, read

PATH = "enrolled.bin"
SLOT_MS = 2000
AMBIENT_MS = 500
MARGIN_PCT = 25
MIN_HOPS = 10       # the shortest template (0.2 s)
EDGE_HOPS = 3       # kept either side of the loud part: the softer consonants at its edges
# by number of examples (the last for more), without a cohort: for 3 and 4, the largest cap
# whose false accepts were <= 1 per hour on the benchmark's picking half (docs/enroll.md "On the
# device"); 2 takes 3's and 5 or more 4's (no speaker of the data has enough clips to measure them)
THRESHOLDS = (90, 90, 90, 90, 100)
# calibrate(): training/enroll_dtw.py's constants (tests/test_enroll.py), picked on half the
# benchmark's speakers (docs/enroll.md "Calibrated at enrollment")
CAL_RANK = 2        # the (CAL_RANK + 1)-th smallest cohort distance ...
CAL_FACTOR_32 = 24  # ... times this / 32 ...
CAL_CAP = 120       # ... at most this, is the threshold
# THRESHOLDS and CAL_CAP are int8 distances between frames at this input scale (the models'
# they were picked on, and esp32's and wide's); a model whose frames have another scale gets
# them scaled (scaled()): its distances are larger in int8 steps when its scale is smaller
CONSTANTS_INPUT_SCALE = 0.0562
COHORT_MAGIC = b"HKCO"
_COHORT_HEAD = "<4sHHIIH"   # magic, version, frame width, model blob CRC, body CRC, clips
MAX_WORDS = 16
MAX_EXAMPLES = 10


def save(path, crc_model, width, words):
    """Write the words (enrolled.read's) to path through path + ".tmp" and a rename: all or
    nothing."""
    import os
    body = bytearray([len(words)])
    for name, thr, lengths, frames in words:
        raw = name.encode()
        body += bytes([len(raw)]) + raw + struct.pack("<HB", thr, len(lengths)) + lengths + frames
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack(_HEAD, MAGIC, VERSION, width, crc_model, crc32(body)))
            f.write(body)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def trim(c0, silence):
    """(first, last + 1) hop of the word in a slot, from its hops' MFCC c0 (offset form):
    training/enroll_dtw.py speech(), the rule the benchmark measured (the same integers; see
    there). silence: c0 of all-zero samples (the warm-up's frame)."""
    n = len(c0)
    live = [j for j in range(n) if c0[j] != silence] or list(range(n))
    values = sorted(c0[j] for j in live)
    i, r = divmod((len(values) - 1) * 10, 100)
    floor = (values[i] * (100 - r) + values[min(i + 1, len(values) - 1)] * r) // 100
    top = values[-1]
    cut = floor + (top - floor) // 3
    loud = [j for j in live if c0[j] >= cut]
    lo = max(live[0], loud[0] - EDGE_HOPS)
    hi = min(live[-1] + 1, loud[-1] + 1 + EDGE_HOPS)
    if hi - lo < MIN_HOPS:
        lo = max(0, min(c0.index(top) - MIN_HOPS // 2, n - MIN_HOPS))
        hi = lo + MIN_HOPS
    return lo, hi


def scaled(value, input_scale):
    """A distance picked on frames at CONSTANTS_INPUT_SCALE, for frames at input_scale."""
    return int(value * CONSTANTS_INPUT_SCALE / input_scale + 0.5)


def input_scale(model):
    """The model's input scale (its frames' int8 step) from the blob's meta, read before the
    model is loaded (the listening path keeps no copy); None if the blob cannot say, and the
    loader then says what is wrong with it."""
    import json
    try:
        with open(model, "rb") as f:
            f.seek(16)
            n = struct.unpack("<I", f.read(4))[0]
            return float(json.loads(f.read(n))["model"]["input"]["scale"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def threshold(examples, input_scale=CONSTANTS_INPUT_SCALE):
    """The word's threshold (DTW distance per template frame) for its number of examples."""
    return scaled(THRESHOLDS[min(examples, len(THRESHOLDS) - 1)], input_scale)


class _Costs:
    """Each template's smallest DTW cost over a sequence of frames (dtw.update hop by hop from a
    fresh state: the cost of the template found anywhere in it, saturated at dtw.INF)."""

    def __init__(self, got, width):
        import dtw
        from array import array
        from match import _fill
        self.fill = _fill
        self.update = dtw.update
        self.INF = dtw.INF
        self.width = width
        self.lengths = bytes(len(t) // width for t in got)
        self.n = len(got)
        self.templates = b"".join(got)
        self.state = array("H", bytes(12 * len(self.templates) // width))
        self.out = array("i", bytes(4 * self.n))

    def over(self, frames, n_frames):
        self.fill(self.state, len(self.state), self.INF)
        best = [self.INF] * self.n
        out = self.out
        w = self.width
        for h in range(n_frames):
            self.update(frames[h * w:h * w + w], self.templates, self.lengths, self.n, w,
                        self.state, h % 3, out)
            for m in range(self.n):
                if out[m] < best[m]:
                    best[m] = out[m]
        return best


def _cohort_threshold(cost, lengths, keep, cap):
    """CAL_FACTOR_32/32 x the (CAL_RANK + 1)-th smallest, over cohort clips, of the nearest kept
    template's distance (cost x 16 // frames), at most cap, at least 1."""
    s = sorted(min(c[t] * 16 // lengths[t] for t in keep) for c in cost)
    return max(1, min(cap, s[CAL_RANK] * CAL_FACTOR_32 // 512))


def cohort_costs(path, crc_model, costs):
    """Per cohort clip (the file at path), each template's smallest cost over it (_Costs); the
    file is read clip by clip. ValueError saying what is wrong."""
    width = costs.width
    with open(path, "rb") as f:
        head = f.read(struct.calcsize(_COHORT_HEAD))
        if len(head) < 18 or head[:4] != COHORT_MAGIC:
            raise ValueError("%s is not a hark cohort file" % path)
        _, version, have, crc_of, crc, n = struct.unpack(_COHORT_HEAD, head)
        if version != 1 or have != width or crc_of != crc_model:
            raise ValueError("%s belongs to another model" % path)
        lengths = f.read(n)
        check = crc32(lengths)
        buf = bytearray(255 * width)
        view = memoryview(buf)
        out = []
        for length in lengths:
            got = f.readinto(view[:length * width])
            if got != length * width:
                raise ValueError("%s is truncated" % path)
            check = crc32(view[:got], check)
            out.append(costs.over(view, length))
        if check != crc or n <= CAL_RANK:
            raise ValueError("%s is damaged" % path)
    return out


def calibrate(got, width, cohort, crc_model, input_scale=CONSTANTS_INPUT_SCALE):
    """(the kept templates' indices, the word's threshold) from the templates' smallest costs
    over the cohort's clips and over each other (training/enroll_dtw.py calibrate(), the same
    integers): the threshold from the cohort (_cohort_threshold); a template that reaches no
    other example within it is dropped, and the threshold set again from those kept."""
    costs = _Costs(got, width)
    cost = cohort_costs(cohort, crc_model, costs)
    lengths = costs.lengths
    k = len(got)
    loo = [costs.over(memoryview(t), len(t) // width) for t in got]     # loo[i][j]: j over i
    cap = scaled(CAL_CAP, input_scale)
    first = _cohort_threshold(cost, lengths, range(k), cap)
    keep = [j for j in range(k) if any(loo[i][j] <= first * lengths[j] for i in range(k) if i != j)]
    if not keep:
        near = [min(loo[i][j] for i in range(k) if i != j) * 16 // lengths[j] for j in range(k)]
        keep = [near.index(min(near))]
    return keep, _cohort_threshold(cost, lengths, keep, cap)


def cohort_path(model):
    """The cohort file beside the model: model.cohort for model.hark."""
    return (model[:-5] if model.endswith(".hark") else model) + ".cohort"


class _Listener:
    """The runtime's front end and engine fed from a source: slots of frames, each with the
    largest embedding mass among its inferences."""

    def __init__(self, rt, source):
        self.rt = rt
        self.source = source
        self.silence = rt.fe.frame[0] ^ 0x80    # the warm-up's frame: all-zero samples
        self.t = 0          # audio time, ms: the actions' clock (the prompt's LED blink ends)
        self._k = 0
        self._frames = []

    def slot(self, ms):
        """(largest embedding mass, the frames in offset form) of the next ms of audio; None when
        the audio ends first."""
        from runtime import _push_frame
        rt = self.rt
        eng = rt.engine
        width = rt.width
        best = -1
        n = ms // rt.hop_ms
        frames = bytearray(n * width)
        got = 0
        while got < n:
            if not self._frames:
                m = self.source.readinto(rt.buf)
                if not m:
                    return None
                pos = 0
                while pos < m:
                    pos = rt.fe.push(rt.buf, pos, m)
                    if rt.fe.ready:
                        self._frames.append(bytes(rt.fe.frame))
                continue
            frame = self._frames.pop(0)
            for i in range(width):
                frames[got * width + i] = frame[i] ^ 0x80
            got += 1
            self.t += rt.hop_ms
            rt.actions.poll(self.t)
            if rt.streaming:
                eng.push(frame)
            else:
                _push_frame(eng.input, frame, rt.total, rt.width)
            self._k += 1
            if self._k < rt.infer_every:
                continue
            self._k = 0
            if not rt.streaming:
                eng.invoke()
            mass = sum(eng.embedding)
            if mass > best:
                best = mass
        return best, frames


def record(rt, source, word, examples, say=print):
    """Listen for `examples` utterances of word; their templates, the word's frames of each
    (ValueError if the audio ends first)."""
    listen = _Listener(rt, source)
    room = listen.slot(AMBIENT_MS)
    if room is None:
        raise ValueError("the audio ended before enrollment began; nothing was saved")
    floor = room[0] * (100 + MARGIN_PCT) // 100
    width = rt.width
    got = []
    tries = 0
    while len(got) < examples:
        tries += 1
        if tries > 2 * examples:
            raise ValueError("heard only %d of %d examples of %r over the room's noise; "
                             "nothing was saved: speak closer to the microphone and try again"
                             % (len(got), examples, word))
        say("enroll: say %r now (%d/%d)" % (word, len(got) + 1, examples))
        rt.actions.fire(word, 100, listen.t)    # the profile's LED blinks: speak now
        heard = listen.slot(SLOT_MS)
        if heard is None:
            raise ValueError("the audio ended after %d of %d examples of %r; nothing was saved"
                             % (len(got), examples, word))
        if heard[0] <= floor:
            say("enroll: heard nothing over the room's noise; again")
            continue
        frames = heard[1]
        lo, hi = trim([frames[j * width] for j in range(len(frames) // width)], listen.silence)
        got.append(bytes(frames[lo * width:hi * width]))
    return got


def _check_name(word, labels):
    if not word or len(word) > 32 or not all(c.isalpha() or c.isdigit() or c in "_-" for c in word):
        raise ValueError("word name %r: use 1..32 letters, digits, - or _" % (word,))
    if word.startswith("_") or word in labels:
        raise ValueError("%r is a label of the model already; enroll a word it does not know"
                         % (word,))


def enroll(word, examples=4, model="model.hark", board="config.json", path=PATH, wav=None,
           stdin=False):
    """Record `examples` utterances of `word` from the board's microphone (or a WAV file / stdin),
    set its threshold (threshold()) and save it with the other enrolled words (replacing a word
    of the same name). Nothing changes on disk unless every example was heard."""
    import options
    from runtime import Runtime
    if not 2 <= examples <= MAX_EXAMPLES:
        raise ValueError("examples: give 2..%d, got %d" % (MAX_EXAMPLES, examples))
    prof = options.load_board(board)
    # the grammar and pins may name words only enrolling makes known (this one, say): the
    # prompts need the audio and the LED alone
    prof["grammar"] = None
    prof["actions"] = {"led": (prof.get("actions") or {}).get("led")}
    source = options.make_source(prof, wav, stdin, 0)
    scale = input_scale(model)
    try:
        rt = Runtime(model, prof, printer=False, enrolled="")
        if rt.engine.embedding is None:
            raise ValueError("%s marks no embedding; re-export it with `hark export`" % model)
        _check_name(word, rt.labels)
        words, bad = _existing(path, model, rt.width)
        words = [w for w in words if w[0] != word]
        if len(words) >= MAX_WORDS:
            raise ValueError("%d words are enrolled already; delete one first" % len(words))
        got = record(rt, source, word, examples)
    finally:
        source.close()
    kept = how = ""
    try:
        keep, thr = calibrate(got, rt.width, cohort_path(model), model_crc(model), scale)
        if len(keep) < len(got):
            kept = ", %d unlike the others dropped" % (len(got) - len(keep))
        got = [got[j] for j in keep]
    except (OSError, ValueError) as exc:
        thr = threshold(examples, scale)
        how = " (%s: set by the number of examples)" % (
            exc if isinstance(exc, ValueError) else "no " + cohort_path(model))
    words.append((word, thr, bytes(len(t) // rt.width for t in got), b"".join(got)))
    if bad:
        import os
        os.rename(path, path + ".bad")
        print("enroll: %s; kept as %s.bad, starting a new set" % (bad, path))
    save(path, model_crc(model), rt.width, words)
    print("enroll: saved %r (%d examples%s, %s frames, threshold %d%s); %d words enrolled"
          % (word, examples, kept, "+".join(str(len(t) // rt.width) for t in got), thr, how,
             len(words)))


def _existing(path, model, width):
    """(the words already in path, to keep; why the file cannot be kept or None). A damaged file
    or one recorded with another model is set aside as path + ".bad" when the new set is saved."""
    import os
    try:
        os.stat(path)
    except OSError:
        return [], None
    try:
        crc, have, words = read(path)
    except ValueError as exc:
        return [], str(exc)
    if crc != model_crc(model) or have != width:
        return [], "%s was recorded with another model" % path
    return words, None


def show(path=PATH):
    """Print the enrolled words: name, examples, frames, threshold."""
    import os
    try:
        os.stat(path)
    except OSError:
        print("enroll: no words enrolled")
        return
    _, _, words = read(path)
    for name, thr, lengths, _ in words:
        print("enrolled %s examples=%d frames=%d threshold=%d" % (name, len(lengths), sum(lengths),
                                                                 thr))
    print("enroll: %d words, %d bytes" % (len(words), os.stat(path)[6]))


def delete(word, path=PATH):
    """Remove one enrolled word (the file is rewritten all or nothing)."""
    crc, width, words = read(path)
    keep = [w for w in words if w[0] != word]
    if len(keep) == len(words):
        raise ValueError("%r is not enrolled; enrolled: %s"
                         % (word, ", ".join(w[0] for w in words) or "none"))
    save(path, crc, width, keep)
    print("enroll: deleted %r; %d words enrolled" % (word, len(keep)))


def main(argv):
    """main.py --enroll WORD [--examples N] | --list | --delete WORD (runtime.main)."""
    import options
    opts = options.parse(argv, {"--enroll": None, "--examples": 4, "--list": False,
                                "--delete": None})
    if not (opts["enroll"] or opts["list"] or opts["delete"]):
        raise ValueError("--examples goes with --enroll WORD")
    path = opts["enrolled"] or PATH
    if opts["list"]:
        show(path)
    elif opts["delete"]:
        delete(opts["delete"], path)
    else:
        enroll(opts["enroll"], opts["examples"], opts["model"], opts["board"], path, opts["wav"],
               opts["stdin"])
    return 0
