"""`hark monitor`: watch a board's detections live.

By default the board is restarted under the monitor (soft reset, then main.py through the REPL),
so start-up errors show too; Ctrl-C stops watching and restarts main.py on its own. With --attach
the monitor only listens to a board that is already running. On the unix port main.py is started
the same way, reading the profile's WAV file; Ctrl-C cannot reach a program running in the unix
port through a raw pseudo-terminal, so there main.py runs to the end of the WAV.
"""
import argparse
import re
import sys
import time

from hark import boards
from hark.cli import HarkError
from hark.unixport import detection_line

DETECTION = re.compile(r"^t=(\d+\.\d+)s (\S+) (\d+\.\d+)$")
EXIT = re.compile(r"^hark: main\.py exited with code (-?\d+)$")
# main.py as at boot, its error messages on stdout (runtime.err); SystemExit is caught because it
# would end the unix port's process.
RUN_MAIN = ("import sys\ntry:\n import runtime\n runtime.err = sys.stdout\nexcept ImportError:\n pass\n"
            "try:\n exec(open('main.py').read(), {'__name__': '__main__'})\n"
            "except SystemExit as e:\n print('hark: main.py exited with code', e.args[0] if e.args else 0)")

EXAMPLES = """\
examples:
  hark monitor --board esp32-inmp441                     # restart main.py, then watch until Ctrl-C
  hark monitor --board rp2040 --port /dev/ttyACM0 --attach --seconds 60
"""


def register(sub):
    p = sub.add_parser("monitor", help="show a board's detections live", description=__doc__,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help=f"board profile ({', '.join(boards.available())})")
    p.add_argument("--port", help="serial port (default: the only MicroPython-like USB device)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--attach", action="store_true",
                   help="listen to a board that is already running main.py, without restarting it")
    p.set_defaults(func=run)


class Printer:
    """Prints board output; detections stand out and are counted."""

    def __init__(self):
        self.detections = 0
        self.exit_code = None
        self.errors = []        # the firmware's error lines and the board's traceback

    def __call__(self, line: str, error=False):
        out = sys.stdout
        m = DETECTION.match(line.strip())
        exit_line = EXIT.match(line.strip())
        if exit_line:
            self.exit_code = int(exit_line.group(1))
        elif line.strip() and (error or line.startswith("hark: error") or
                               line.startswith("hark: out of memory")):
            self.errors.append(line.strip())
        if m:
            self.detections += 1
            t, label, p = m.groups()
            out.write(detection_line(float(t), label, float(p)) + "\n")
        elif line.strip():
            out.write(f"    {line}\n")
        out.flush()


def attach(port, printer, seconds):
    """Read lines from a running board's serial port without touching its REPL."""
    import serial

    from hark.device import CABLE_HINT, describe_ports, find_port

    port = find_port(port)
    try:
        link = serial.Serial(port, 115200, timeout=0.2)
    except (serial.SerialException, OSError) as exc:
        raise HarkError(f"no board connected at {port} ({exc}); {describe_ports()}; {CABLE_HINT}") from None
    end = time.monotonic() + seconds if seconds else None
    buf = b""
    with link:
        while end is None or time.monotonic() < end:
            buf += link.read(256)
            *lines, buf = buf.split(b"\n")
            for line in lines:
                printer(line.rstrip(b"\r").decode(errors="replace"))


def watch(device, board, printer, seconds):
    """Restart main under the monitor and stream its lines until it ends, the time is up or Ctrl-C."""
    from mpremote.transport import TransportError

    device.check_board(board, device.probe())
    if board["mcu"] != "unix":
        device.fresh_heap()
    t = device.transport
    t.serial.timeout = 0.2  # so --seconds ends even when the board is quiet
    buf = bytearray()
    finished = 0
    end = time.monotonic() + seconds if seconds else None
    try:
        t.exec_raw_no_follow(RUN_MAIN)
        while finished < 2 and (end is None or time.monotonic() < end):
            data = t.serial.read(t.serial.in_waiting or 1)
            # raw REPL: output, \x04, error output (a traceback), \x04
            for i, part in enumerate(data.split(b"\x04")):
                if i:
                    if buf.strip():
                        printer(bytes(buf).rstrip(b"\r").decode(errors="replace"), error=finished == 1)
                    buf.clear()
                    finished += 1
                buf.extend(part)
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf[:] = rest
                    printer(line.rstrip(b"\r").decode(errors="replace"), error=finished == 1)
    except KeyboardInterrupt:
        pass
    except (TransportError, OSError) as exc:
        raise HarkError(f"lost the connection to {device.port} ({exc})") from None
    finally:
        t.serial.write(b"\x03")  # stop main if it is still running
        time.sleep(0.1)
        t.serial.reset_input_buffer()
    if buf.strip() and finished < 2:  # after both end markers only the REPL prompt is left
        printer(bytes(buf).decode(errors="replace"), error=finished == 1)


def run(args):
    board = boards.load(args.board)
    printer = Printer()
    if args.attach:
        try:
            attach(args.port, printer, args.seconds)
        except KeyboardInterrupt:
            pass
    else:
        from hark.device import Device

        with Device(args.port) as device:
            print(f"monitoring {board['name']} on {device.port} (Ctrl-C to stop)")
            watch(device, board, printer, args.seconds)
            if board["mcu"] != "unix":
                device.soft_reset()  # main.py runs on its own again
    print(f"{printer.detections} detection(s)")
    if printer.errors or printer.exit_code:
        code = f" with code {printer.exit_code}" if printer.exit_code else ""
        last = printer.errors[-1] if printer.errors else "see above"
        raise HarkError(f"main.py on the board stopped{code}: {last}")
    return 0
