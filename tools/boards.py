"""Board profiles (boards/*.json): loading, validation against boards/schema.json, budget checks.

A profile says what a board is (chip, .mpy architecture, microphone wiring) and what hark may use
on it (RAM and filesystem budgets). `fits()` compares a model blob and compiled firmware against
those budgets so `hark deploy` can refuse before touching the board.
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from hark import BOARDS_DIR
from hark.cli import HarkError

SCHEMA_PATH = BOARDS_DIR / "schema.json"

# What sys.platform and sys.implementation._machine say on each chip (checked on connect).
PLATFORM = {"ESP32": "esp32", "ESP32-S3": "esp32", "RP2040": "rp2", "STM32F405": "pyboard",
            "unix": ("linux", "darwin", "freebsd")}
MACHINE_PATTERN = {"ESP32": r"with ESP32$", "ESP32-S3": r"with ESP32S3$", "RP2040": r"with RP2040$",
                   "STM32F405": r"with STM32F405"}
# Index = sys.implementation._mpy >> 10 (the native architecture of a MicroPython build).
MPY_ARCHES = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
              "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc"]

# RAM the interpreter needs beyond the loaded code and buffers: module dicts, function objects,
# the detector's small state, a REPL line. An estimate, not a measurement on each board.
INTERPRETER_OVERHEAD_BYTES = 8 * 1024

_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
               "integer": int, "number": (int, float), "null": type(None)}


def _type_ok(value, name):
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value, schema, path="") -> list:
    """Check value against the JSON Schema subset used by boards/schema.json; one message per problem."""
    where = path or "profile"
    errors = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_type_ok(value, t) for t in types):
            got = "null" if value is None else type(value).__name__
            return [f"{where}: expected {' or '.join(types)}, got {got} ({json.dumps(value)})"]
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(v) for v in schema["enum"])
        return [f"{where}: {json.dumps(value)} is not one of {choices}"]
    if "minimum" in schema and _type_ok(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing key '{key}'")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if key in props:
                errors += schema_errors(item, props[key], sub)
            elif extra is False:
                known = ", ".join(sorted(props))
                errors.append(f"{where}: unknown key '{key}' (known keys: {known})")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, sub)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def _rule_errors(board) -> list:
    """Rules JSON Schema cannot express: cross-field consistency of a profile."""
    errors = []
    audio, grammar = board["audio"], board["grammar"] or {"mode": "commands"}
    if audio["source"] == "i2s" and audio["i2s"] is None:
        errors.append("audio.i2s: the i2s source needs the pins {id, sck, ws, sd, bits, ibuf}")
    if audio["source"] == "wav" and "path" not in audio:
        errors.append("audio.path: the wav source needs the WAV file's device path")
    if board["mcu"] == "RP2040" and audio["i2s"] and isinstance(audio["i2s"]["sck"], int):
        if audio["i2s"]["ws"] != audio["i2s"]["sck"] + 1:
            errors.append("audio.i2s.ws: machine.I2S on the RP2040 needs ws = sck + 1 "
                          f"(sck is GP{audio['i2s']['sck']}, so ws must be GP{audio['i2s']['sck'] + 1})")
    if grammar["mode"] != "commands" and not grammar["wake_word"]:
        errors.append(f"grammar.wake_word: mode '{grammar['mode']}' needs a wake word")
    if grammar["mode"] == "wake+command" and grammar["command_window_ms"] <= 0:
        errors.append("grammar.command_window_ms: mode 'wake+command' needs a window > 0 ms")
    errors += detector_errors(detector_overrides(board), "detector.")
    for word in enroll_words(board):
        if not enroll_name_ok(word):
            errors.append(f"enroll.words: '{word}' must be 1..32 letters, digits, - or _ "
                          "(not starting with _)")
    return errors + pin_clashes(board)


# Detector settings: (range check, what it must be). The firmware refuses some of these only
# at boot and takes others (a threshold over 1) silently, so they are checked on the host.
DETECTOR_RANGES = {
    "threshold": (lambda v: 0 < v <= 1, "a probability in (0, 1]"),
    "average_window_ms": (lambda v: isinstance(v, int) and v > 0, "a whole number of ms > 0"),
    "command_average_ms": (lambda v: isinstance(v, int) and v > 0, "a whole number of ms > 0"),
    "suppression_ms": (lambda v: isinstance(v, int) and v >= 0, "a whole number of ms >= 0"),
    "minimum_count": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "infer_every": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
}


def detector_overrides(board: dict) -> dict:
    """The profile's detector settings over the blob's (a profile may nest them in
    "overrides")."""
    detector = board.get("detector") or {}
    return detector.get("overrides", detector)


def detector_errors(detector: dict, prefix="") -> list:
    """One message per detector setting out of range (thresholds {label: p} included)."""
    errors = []
    values = [(k, v) for k, v in detector.items() if k in DETECTOR_RANGES]
    values += [("threshold", v, f"thresholds.{label}")
               for label, v in (detector.get("thresholds") or {}).items()]
    for key, value, *name in values:
        ok, what = DETECTOR_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            errors.append(f"{prefix}{name[0] if name else key}: {json.dumps(value)} must be {what}")
    return errors


def pin_clashes(board: dict) -> list:
    """GPIOs given two jobs: an I2S line, the LED and action pins (several labels may share
    one action pin)."""
    uses = [(f"audio.i2s.{k}", v) for k, v in (board["audio"]["i2s"] or {}).items()
            if k in ("sck", "ws", "sd")]
    if board["actions"]["led"]:
        uses.append(("actions.led.pin", board["actions"]["led"]["pin"]))
    uses += [(f"actions.pins.{label}", v["pin"] if isinstance(v, dict) else v)
             for label, v in board["actions"]["pins"].items()]
    errors, seen = [], {}
    for name, pin in uses:
        first = seen.setdefault(pin, name)
        if first != name and not (first.startswith("actions.pins.") and name.startswith("actions.pins.")):
            errors.append(f"{name}: pin {pin} is already {first}; give each job its own GPIO")
    return errors


def available(boards_dir: Path = BOARDS_DIR) -> list:
    return sorted(p.stem for p in Path(boards_dir).glob("*.json") if p.name != "schema.json")


def validate(board: dict, source="profile") -> dict:
    schema = json.loads(SCHEMA_PATH.read_text())
    errors = schema_errors(board, schema)
    if not errors:
        errors = _rule_errors(board)
    if errors:
        raise HarkError(f"{source} is not a valid board profile:\n  " + "\n  ".join(errors)
                        + f"\n(schema: {SCHEMA_PATH})")
    return board


def load(name_or_path, boards_dir: Path = BOARDS_DIR) -> dict:
    """Load and validate a profile by name (boards/<name>.json) or by path to a .json file."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = Path(boards_dir) / f"{name_or_path}.json"
        if not path.is_file():
            raise HarkError(f"unknown board '{name_or_path}'; available boards: "
                            + ", ".join(available(boards_dir))
                            + f" (or pass a profile file; profiles live in {boards_dir})")
    try:
        board = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarkError(f"board profile {path} not found") from None
    except json.JSONDecodeError as exc:
        raise HarkError(f"{path} is not valid JSON: {exc}") from None
    validate(board, str(path))
    if board["name"] != path.stem:
        raise HarkError(f"{path}: name '{board['name']}' must match the file name '{path.stem}'")
    return board


def read_blob_meta(path) -> dict:
    """The JSON meta of a model blob, after the checks the firmware makes at boot (length, CRC-32,
    format version: training/blobmeta.py), so a blob the board would refuse never reaches it."""
    from hark.training.blobmeta import BlobError, read_meta

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HarkError(f"model {path} not found; train and export one (`hark export`) "
                        "or pass --model") from None
    except OSError as exc:
        raise HarkError(f"cannot read model {path} ({exc.strerror}); check the path") from None
    try:
        meta, _ = read_meta(data, str(path))
    except BlobError as exc:
        raise HarkError(str(exc)) from None
    if not isinstance(meta["labels"], list):
        raise HarkError(f"{path}: the meta has no list of labels; re-export with `hark export`")
    return meta


def enroll_name_ok(word: str) -> bool:
    """The names firmware/enroll.py's _check_name takes (MicroPython's isalpha/isdigit are ASCII
    only): a host copy, so a profile is refused before deploy; tests/test_boards.py ties the two."""
    return (0 < len(word) <= 32 and word.isascii() and not word.startswith("_")
            and all(c.isalnum() or c in "_-" for c in word))


def enroll_words(board: dict) -> list:
    """The words the profile says a user will enroll (its "enroll" key)."""
    return list((board.get("enroll") or {}).get("words", []))


def model_errors(board: dict, meta: dict) -> list:
    """Labels the profile names (wake word, action pins) that the model cannot detect: neither
    its labels nor the words the profile will have enrolled; and a commands' own averaging
    window where the grammar the board will run has no command after a wake word."""
    labels = meta.get("labels")
    if not labels:
        return []
    errors = [f"enroll.words: '{w}' is a label of the model already; enroll words it does not know"
              for w in enroll_words(board) if w in labels]
    known = labels + enroll_words(board)
    what = "a label of the model" + (" or a word of enroll.words" if enroll_words(board) else "")
    grammar = board["grammar"]
    if grammar and grammar["mode"] != "commands" and grammar["wake_word"] not in known:
        errors.append(f"grammar.wake_word '{grammar['wake_word']}' is not {what}")
    for label in board["actions"]["pins"]:
        if label not in known:
            errors.append(f"actions.pins: '{label}' is not {what}")
    if errors:
        errors.append(f"the model's labels: {', '.join(labels)} (a word to enroll goes in the "
                      "profile's enroll.words)")
    mode = (board["grammar"] or meta.get("grammar") or {}).get("mode", "commands")
    if "command_average_ms" in detector_overrides(board) and mode != "wake+command":
        errors.append(f"detector.command_average_ms: the commands' own window after the wake word, "
                      f"but this board runs the {mode!r} grammar; set average_window_ms instead")
    return errors


def kb(n: int, up=False) -> str:
    """n bytes in KB for messages; up=True rounds up (an amount over budget is never '0 KB')."""
    if up:
        return f"{math.ceil(n / 1024)} KB"
    return f"{n / 1024:.1f} KB" if n < 10 * 1024 else f"{round(n / 1024)} KB"


NARROWER = ("models/default.hark (width 64) fits every board profile; `hark train --width 48` or "
            "narrower for less")


@dataclass
class FitReport:
    """Flash and RAM needs of a deployment against a board's budgets, item by item."""
    board: str
    flash_budget: int
    ram_budget: int
    flash: dict = field(default_factory=dict)
    ram: dict = field(default_factory=dict)
    ram_estimated: list = field(default_factory=list)

    @property
    def flash_needed(self) -> int:
        return sum(self.flash.values())

    @property
    def ram_needed(self) -> int:
        return sum(self.ram.values())

    @property
    def ok(self) -> bool:
        return self.flash_needed <= self.flash_budget and self.ram_needed <= self.ram_budget

    def problems(self) -> list:
        out = []
        if self.flash_needed > self.flash_budget:
            out.append(f"model and firmware need {kb(self.flash_needed)} of flash, {self.board} has "
                       f"{kb(self.flash_budget)} flash budget: {kb(self.flash_needed - self.flash_budget, up=True)} over "
                       f"({self._items(self.flash)}); use a model with fewer weights ({NARROWER}) "
                       "or a board with more flash")
        if self.ram_needed > self.ram_budget:
            out.append(f"model and firmware need {kb(self.ram_needed)} of RAM, {self.board} has "
                       f"{kb(self.ram_budget)} RAM budget: {kb(self.ram_needed - self.ram_budget, up=True)} over "
                       f"({self._items(self.ram)}); {self._ram_lever()} or a board with more RAM")
        return out

    def _ram_lever(self) -> str:
        """The fix for the model's largest share of the RAM: its weights (the blob is read into
        RAM) or its activations (the arena)."""
        if self.ram.get("model", 0) >= self.ram.get("arena", 0):
            return (f"the model blob ({kb(self.ram['model'])}, read into RAM) is the largest part: "
                    f"use a model with fewer weights ({NARROWER})")
        return (f"the tensor arena ({kb(self.ram['arena'])}) is the largest part of the model's "
                f"share: use a model with smaller activations ({NARROWER})")

    @staticmethod
    def _items(parts):
        return ", ".join(f"{name} {kb(n)}" for name, n in parts.items() if n)

    def __str__(self):
        est = f" (estimated: {', '.join(self.ram_estimated)})" if self.ram_estimated else ""
        lines = [f"{self.board}: flash {kb(self.flash_needed)} of {kb(self.flash_budget)} "
                 f"({self._items(self.flash)})",
                 f"{self.board}: RAM {kb(self.ram_needed)} of {kb(self.ram_budget)} "
                 f"({self._items(self.ram)}){est}"]
        return "\n".join(lines + self.problems())


def frontend_buffer_bytes(meta: dict) -> int:
    """RAM of the audio front end's working buffers, from the feature spec in the blob meta.

    One FFT frame of int16 samples, the int32 complex FFT (n_fft / 2 + 1 bins: the real FFT's
    bins replace it in place), int32 mel energies, the MFCC feature window the model reads (int8)
    and one hop of raw I2S samples (32-bit slots).
    """
    feat = meta.get("features", {})
    n_fft = feat.get("n_fft", 512)
    n_mels = feat.get("n_mels", 40)
    n_mfcc = feat.get("n_mfcc", 10)
    frames = feat.get("n_frames", 49)
    hop = feat.get("hop_length", 320)
    return n_fft * 2 + (n_fft // 2 + 1) * 8 + n_mels * 4 + n_mfcc * frames + hop * 4


def uses_extra_kernels(model_path) -> bool:
    """Whether the model's plans call a kernel of firmware/engine_extra.py (MEAN, ADD)."""
    from hark.training.blob import read_blob
    from hark.training.plan import KERNELS, STEP_FIELDS
    _, arrays = read_blob(model_path)
    extra = {KERNELS.index("mean"), KERNELS.index("add")}
    return any(int(k) in extra for name in ("p.w.steps", "p.s.steps") if name in arrays
               for k in arrays[name][::len(STEP_FIELDS)])


def ring_bytes_saved(model_path) -> int:
    """The bytes of the streaming arena the firmware does not allocate: the exporter lays each
    ring out twice over, the firmware stores it once (firmware/plan.py _rings_once)."""
    from hark.training.blob import read_blob
    _, arrays = read_blob(model_path)
    rings = arrays.get("p.s.rings")
    if rings is None:
        return 0
    return sum((int(R) * int(C)) & ~3 for R, C in zip(rings[1::7], rings[3::7]))


def resident_modules(board: dict, firmware_files, extra_kernels=True) -> list:
    """The firmware files whose code is in RAM when the heap peaks (buffers and I2S allocated):
    start-up drops options before the model loads and blob, plan, configure and fesetup before that
    peak (actsetup, the actions' set-up, right after it), stats is imported after the run, only
    one audio module is ever imported (a board's, mic, whose micsetup is dropped once the microphone runs, or the host's, sources, whose wavheader is
    dropped once the file is open), and engine_extra only for a model whose plan calls it.
    Enrolled words (match, dtw) are not counted: a board has none when deployed, and `hark enroll`
    adds them later (README: RAM per enrolled word); enroll runs only in enroll mode."""
    i2s = board["audio"].get("source", "i2s") == "i2s"
    unused = {"options", "blob", "plan", "configure", "actsetup", "fesetup", "wavheader", "micsetup",
              "stats", "enroll", "enrolled", "match", "dtw",
              "sources" if i2s else "mic"}
    if not extra_kernels:
        unused.add("engine_extra")
    return [f for f in firmware_files if Path(f).stem not in unused]


def fits(board: dict, model_path, firmware_files, config_bytes: int = 0) -> FitReport:
    """Flash: model + firmware files + config.json against flash_budget_bytes.

    RAM: the model blob (firmware/blob.py reads it into one buffer), the model's tensor arena
    (the streaming rings' arena as the firmware stores them, else the window's, else
    estimated), front-end buffers, the I2S buffer, the code of the
    modules resident at the peak (about their .mpy size) and interpreter overhead against
    ram_budget_bytes.
    """
    model_path = Path(model_path)
    meta = read_blob_meta(model_path)
    model_bytes = model_path.stat().st_size
    code_bytes = sum(Path(f).stat().st_size for f in firmware_files)
    resident_code = sum(Path(f).stat().st_size for f in
                        resident_modules(board, firmware_files, uses_extra_kernels(model_path)))
    mismatch = model_errors(board, meta)
    if mismatch:
        raise HarkError(f"board '{board['name']}' does not match the model {model_path}:\n  "
                        + "\n  ".join(mismatch))
    report = FitReport(board["name"], board["flash_budget_bytes"], board["ram_budget_bytes"])
    report.flash = {"model": model_bytes, "firmware": code_bytes, "config": config_bytes}
    stream = meta.get("model", {}).get("stream")
    # a streaming model runs on its rings (the firmware's default), else on the window's arena
    arena = (stream["arena_bytes"] - ring_bytes_saved(model_path) if isinstance(stream, dict) else
             meta.get("model", {}).get("arena_bytes"))
    if arena is None:
        # Without the exporter's figure assume the largest activation is the input twice over.
        shape = meta.get("model", {}).get("input", {}).get("shape", [1, 49, 10, 1])
        arena = 2 * math.prod(shape)
        report.ram_estimated.append("arena")
    i2s = board["audio"].get("i2s") or {}
    report.ram = {"model": model_bytes, "arena": arena, "frontend": frontend_buffer_bytes(meta),
                  "i2s buffer": i2s.get("ibuf", 0), "code": resident_code,
                  "interpreter": INTERPRETER_OVERHEAD_BYTES}
    report.ram_estimated += ["frontend", "interpreter"]
    return report
