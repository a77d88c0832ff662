"""Enrollment: a user teaches the board a new word by saying it a few times (issue 16).

    import enroll; enroll.enroll("marvin", 5)     # at the REPL; or `hark enroll --board B --word marvin`
    enroll.show(); enroll.delete("marvin")

The board prints a prompt per example (and blinks the profile's LED) and listens for SLOT_MS; of the hops in that slot it keeps
the model's embedding (engine .embedding, int8, the pooled features before the classifier) with
the largest mass (sum of the post-ReLU activations: the hop whose window holds most of the word,
no separate voice detector needed). Before the first prompt it listens AMBIENT_MS to the room; an
example whose mass does not clear the room's by MARGIN_PCT is refused and asked again. The word's
threshold is calibrated from the examples' spread (SPREAD_16 / 16 x the mean L1 distance from
each example to its nearest other one); match.py compares while listening.

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
# threshold = SPREAD_16 / 16 x the examples' spread (README "On-device enrollment": the trade-off
# measured by training/enroll_eval.py)
SPREAD_16 = 10
MAX_WORDS = 16
MAX_EXAMPLES = 10


def save(path, crc_model, size, words):
    """Write the words to path through path + ".tmp" and a rename: all or nothing."""
    import os
    body = bytearray([len(words)])
    for name, thr, templates in words:
        raw = name.encode()
        body += bytes([len(raw)]) + raw + struct.pack("<HB", thr, len(templates) // size) + templates
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack(_HEAD, MAGIC, VERSION, size, crc_model, crc32(body)))
            f.write(body)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _l1(a, b):
    s = 0
    for i in range(len(a)):
        d = a[i] - b[i]
        s += d if d > 0 else -d
    return s


def calibrate(examples):
    """The word's threshold from its examples: SPREAD_16 / 16 x the mean distance from each
    example to its nearest other one (training/enroll_eval.py spread() is the same)."""
    total = 0
    for i, a in enumerate(examples):
        total += min(_l1(a, b) for j, b in enumerate(examples) if j != i)
    return max(1, min(0xFFFF, total // len(examples) * SPREAD_16 // 16))


class _Listener:
    """The runtime's front end and engine fed from a source, one embedding per inference."""

    def __init__(self, rt, source):
        self.rt = rt
        self.source = source
        self.size = len(rt.engine.embedding)
        self.hop_ms = rt.hop_ms * rt.infer_every
        self.t = 0          # audio time, ms: the actions' clock (the prompt's LED blink ends)
        self._k = 0
        self._frames = []

    def peak(self, ms):
        """(mass, embedding) of the hop with the largest embedding mass in the next ms of audio;
        None when the audio ends first."""
        from runtime import _push_frame
        rt = self.rt
        eng = rt.engine
        best = -1
        keep = bytearray(self.size)
        left = ms // self.hop_ms
        while left > 0:
            if not self._frames:
                n = self.source.readinto(rt.buf)
                if not n:
                    return None
                pos = 0
                while pos < n:
                    pos = rt.fe.push(rt.buf, pos, n)
                    if rt.fe.ready:
                        self._frames.append(bytes(rt.fe.frame))
                continue
            frame = self._frames.pop(0)
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
            left -= 1
            mass = sum(eng.embedding)
            if mass > best:
                best = mass
                keep[:] = eng.embedding
        return best, keep


def record(rt, source, word, examples, say=print):
    """Listen for `examples` utterances of word; their templates (ValueError if the audio ends)."""
    listen = _Listener(rt, source)
    room = listen.peak(AMBIENT_MS)
    if room is None:
        raise ValueError("the audio ended before enrollment began; nothing was saved")
    floor = room[0] * (100 + MARGIN_PCT) // 100
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
        heard = listen.peak(SLOT_MS)
        if heard is None:
            raise ValueError("the audio ended after %d of %d examples of %r; nothing was saved"
                             % (len(got), examples, word))
        if heard[0] <= floor:
            say("enroll: heard nothing over the room's noise; again")
            continue
        got.append(heard[1])
    return got


def _check_name(word, labels):
    if not word or len(word) > 32 or not all(c.isalpha() or c.isdigit() or c in "_-" for c in word):
        raise ValueError("word name %r: use 1..32 letters, digits, - or _" % (word,))
    if word.startswith("_") or word in labels:
        raise ValueError("%r is a label of the model already; enroll a word it does not know"
                         % (word,))


def enroll(word, examples=5, model="model.hark", board="config.json", path=PATH, wav=None,
           stdin=False):
    """Record `examples` utterances of `word` from the board's microphone (or a WAV file / stdin),
    calibrate its threshold and save it with the other enrolled words (replacing a word of the
    same name). Nothing changes on disk unless every example was heard."""
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
    try:
        rt = Runtime(model, prof, printer=False, enrolled="")
        if rt.engine.embedding is None:
            raise ValueError("%s marks no embedding; re-export it with `hark export`" % model)
        _check_name(word, rt.labels)
        words, bad = _existing(path, model, len(rt.engine.embedding))
        words = [w for w in words if w[0] != word]
        if len(words) >= MAX_WORDS:
            raise ValueError("%d words are enrolled already; delete one first" % len(words))
        got = record(rt, source, word, examples)
    finally:
        source.close()
    thr = calibrate(got)
    words.append((word, thr, b"".join(got)))
    if bad:
        import os
        os.rename(path, path + ".bad")
        print("enroll: %s; kept as %s.bad, starting a new set" % (bad, path))
    save(path, model_crc(model), len(got[0]), words)
    print("enroll: saved %r (%d examples, threshold %d); %d words enrolled"
          % (word, examples, thr, len(words)))


def _existing(path, model, size):
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
    if crc != model_crc(model) or have != size:
        return [], "%s was recorded with another model" % path
    return words, None


def show(path=PATH):
    """Print the enrolled words: name, examples, threshold."""
    import os
    try:
        os.stat(path)
    except OSError:
        print("enroll: no words enrolled")
        return
    _, size, words = read(path)
    for name, thr, templates in words:
        print("enrolled %s examples=%d threshold=%d" % (name, len(templates) // size, thr))
    print("enroll: %d words, %d bytes" % (len(words), os.stat(path)[6]))


def delete(word, path=PATH):
    """Remove one enrolled word (the file is rewritten all or nothing)."""
    crc, size, words = read(path)
    keep = [w for w in words if w[0] != word]
    if len(keep) == len(words):
        raise ValueError("%r is not enrolled; enrolled: %s"
                         % (word, ", ".join(w[0] for w in words) or "none"))
    save(path, crc, size, keep)
    print("enroll: deleted %r; %d words enrolled" % (word, len(keep)))


def main(argv):
    """main.py --enroll WORD [--examples N] | --list | --delete WORD (runtime.main)."""
    import options
    opts = options.parse(argv, {"--enroll": None, "--examples": 5, "--list": False,
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
