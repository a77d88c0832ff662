"""`hark record`: record what the board's microphone hears into a 16 kHz WAV on this computer.

The board reads audio through the deployed firmware's sources module (the same path the detector
uses), keeps it in a scratch file, then sends it back over the REPL as base64 lines. Useful to
check wiring and levels, and to collect clips from the real microphone for training.
"""
import argparse
import binascii
import wave
from pathlib import Path

from hark import REPO, boards
from hark.boards import kb
from hark.cli import HarkError

DEVICE_SCRIPT = REPO / "tools" / "record_device.py"
SCRATCH = ".hark-rec.pcm"
RATE = 16000
EXAMPLES = """\
examples:
  hark record --board esp32-inmp441 --out mic.wav                 # 3 s: check wiring and levels
  hark record --board rp2040 --seconds 10 --out marvin_01.wav     # a clip for training
"""


def register(sub):
    p = sub.add_parser("record", help="record N seconds from the board's microphone into a WAV",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help=f"board profile ({', '.join(boards.available())})")
    p.add_argument("--port", help="serial port (default: the only MicroPython-like USB device)")
    p.add_argument("--seconds", type=float, default=3.0, help="length (default 3)")
    p.add_argument("--out", type=Path, required=True, help="WAV file to write (16 kHz mono 16-bit)")
    p.set_defaults(func=run)


def record(device, board: dict, seconds: float) -> bytes:
    """int16 little-endian PCM recorded on the board."""
    audio = board["audio"]
    if audio["source"] == "stdin":
        raise HarkError(f"board '{board['name']}' reads audio from stdin, which is the REPL here; "
                        "record from a board with an I2S microphone or a WAV source")
    n = int(seconds * RATE)
    info = device.probe()
    device.check_board(board, info)
    if board["mcu"] != "unix":
        device.fresh_heap()  # stop main.py's I2S use; a soft reset would end the unix port
    if not device.eval("'sources.py' in os.listdir() or 'sources.mpy' in os.listdir()",
                       "looking for the firmware"):
        raise HarkError(f"the firmware is not on the board at {device.port}: run "
                        f"`hark deploy --board {board['name']}` first")
    if 2 * n + 4 * info["block_size"] > info["free_bytes"]:
        raise HarkError(f"{seconds:g} s of audio need {kb(2 * n)} of scratch space, the board has "
                        f"{kb(info['free_bytes'])} free; record fewer seconds")
    prelude = f"_audio = {audio!r}\n_n = {n}\n_tmp = {SCRATCH!r}\n"
    chunks = []
    end = []

    def on_line(line):
        if line.startswith("END "):
            end.append(int(line.split()[1]))
        elif line:
            chunks.append(binascii.a2b_base64(line))

    device.read_lines(prelude + DEVICE_SCRIPT.read_text(), "recording", on_line,
                      timeout=seconds + 30 + 2 * n / 1000)
    pcm = b"".join(chunks)
    if not end or end[0] * 2 != len(pcm):
        raise HarkError(f"the recording arrived incomplete ({len(pcm) // 2} of "
                        f"{end[0] if end else '?'} samples); try again")
    return pcm


def write_wav(path: Path, pcm: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


def run(args):
    from hark.device import Device

    board = boards.load(args.board)
    if args.seconds <= 0:
        raise HarkError("--seconds must be positive")
    with Device(args.port) as device:
        print(f"recording {args.seconds:g} s on {device.port}...")
        pcm = record(device, board, args.seconds)
        if board["mcu"] != "unix":
            device.soft_reset()  # main.py detects again
    write_wav(args.out, pcm)
    samples = len(pcm) // 2
    peak = max((abs(int.from_bytes(pcm[i:i + 2], "little", signed=True))
                for i in range(0, len(pcm), 2)), default=0)
    print(f"wrote {args.out}: {samples / RATE:.2f} s, peak {peak} of 32767"
          + (" (silent: check the microphone wiring)" if peak < 64 else ""))
    if samples < int(args.seconds * RATE):
        print(f"note: the source ended after {samples} samples")
    return 0
