"""Start-up, step one: the command line, the board profile, the clock and the audio source.

runtime.main drops this module before loading the model (startup.py), so its code is not in
the heap when the model's arrays are; nothing here runs again.
"""
import gc

from runtime import BLOCK

def load_board(path):
    """The board profile, keeping only what the device uses (notes and descriptions cost heap)."""
    import json
    try:
        with open(path) as f:
            board = json.load(f)
    except OSError as exc:
        raise ValueError("board profile %s: cannot open (%s)" % (path, exc))
    except ValueError as exc:
        raise ValueError("board profile %s: not valid JSON (%s)" % (path, exc))
    keep = {}
    for key in ("audio", "actions", "detector", "grammar", "clock_hz", "enroll"):
        if key in board:
            keep[key] = board[key]
    gc.collect()
    return keep


def make_source(board, wav=None, stdin=False, pad_ms=0):
    audio = board.get("audio") or {}
    kind = "wav" if wav else "stdin" if stdin else audio.get("source", "i2s")
    if kind == "i2s":
        import mic
        return mic.I2SSource(audio, BLOCK // 2)    # a 640-byte raw block: two reads a hop
    import sources
    if kind == "wav":
        path = wav or audio.get("path")
        if not path:
            raise ValueError("board profile says audio source 'wav' but gives no path; pass --wav")
        src = sources.WavSource(path, pad_ms)
    elif kind == "stdin":
        src = sources.StdinSource()
    else:
        raise ValueError("audio source %r; use 'i2s', 'wav' or 'stdin'" % kind)
    # a profile that keeps its I2S section (tools/qemu.py) holds the driver's buffer here too,
    # so a run from a file needs the heap the board needs
    ibuf = (audio.get("i2s") or {}).get("ibuf")
    if ibuf:
        src.ibuf = bytearray(ibuf)
    return src


def parse(argv, keys=None):
    """The arguments as a dict, or None at an argument only enroll mode knows: runtime.main then
    hands argv to enroll.main, which passes `keys`, its own options {"--name": default; False
    for a flag}, so their names stay out of the modules loaded while listening. A value is an
    int where its default is."""
    opts = {"model": "model.hark", "board": "config.json", "wav": None, "stdin": False,
            "pad_ms": 0, "stats": False, "heapcheck": False, "no_stream": False,
            "enrolled": "enrolled.bin"}
    flags = ("--stats", "--heapcheck", "--stdin", "--no-stream")     # constant tuples: their
    values = ("--model", "--board", "--wav", "--pad-ms", "--enrolled")  # strings are no qstrs
    for name, default in (keys or {}).items():
        opts[name[2:]] = default
        if default is False:
            flags += (name,)
        else:
            values += (name,)
    i = 0
    while i < len(argv):
        a = argv[i]
        key = a[2:].replace("-", "_")
        if a in flags:
            opts[key] = True
        elif a in values and i + 1 < len(argv):
            i += 1
            opts[key] = int(argv[i]) if type(opts[key]) is int else argv[i]
        elif keys is None and a in ("--enroll", "--list", "--delete", "--examples"):
            return None
        else:
            raise ValueError("unknown or incomplete argument %r; usage: main.py --model M.hark "
                             "--board B.json [--wav F.wav | --stdin] [--pad-ms N] [--stats] "
                             "[--heapcheck] [--no-stream] [--enrolled FILE] "
                             "[--enroll WORD [--examples N] | --list | --delete WORD]" % a)
        i += 1
    return opts


def set_clock(hz):
    """Run at the profile's clock (stock ESP32 firmware boots at 160 of 240 MHz)."""
    if not hz:
        return
    try:
        import machine
        now = machine.freq()
        if (now[0] if isinstance(now, tuple) else now) != hz:  # stm32 returns a tuple
            machine.freq(hz)
    except (ImportError, AttributeError, ValueError):
        pass  # unix port, or a clock this chip refuses: keep the boot clock
