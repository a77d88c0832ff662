"""`hark flash`: firmware files are checked before anything is erased, and the real esptool,
UF2 copy and dfu-util paths fail with messages that say what to do."""
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hark.cli import main

@pytest.fixture
def flash(capsys):
    """Run `hark flash ARGS` in this process; returns (exit code, stdout, stderr)."""
    def run(*args):
        try:
            code = main(["flash"] + [str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


def esp_image(path, chip_id):
    """The first 24 bytes of an ESP image header (magic 0xE9, chip id at offset 12) plus padding."""
    head = bytes([0xE9, 3, 2, 0x20]) + struct.pack("<I", 0x40080000) + bytes([0xEE, 0, 0, 0])
    head += struct.pack("<H", chip_id) + bytes(10)
    path.write_bytes(head + bytes(1000))
    return path


def uf2(path, family):
    block = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, family)
    block += bytes(476) + struct.pack("<I", 0x0AB16F30)
    path.write_bytes(block)
    return path


def test_firmware_is_required(flash):
    result = flash("--board", "esp32-inmp441")
    assert result.returncode == 2 and "--firmware" in result.stderr


def test_missing_firmware_file(flash, tmp_path):
    result = flash("--board", "esp32-inmp441", "--firmware", tmp_path / "nope.bin")
    assert result.returncode == 1 and "not found" in result.stderr and "micropython.org/download" in result.stderr


def test_uf2_for_an_esp32_is_refused(flash, tmp_path):
    result = flash("--board", "esp32-inmp441", "--firmware", uf2(tmp_path / "fw.uf2", 0xE48BFF56))
    assert result.returncode == 1
    assert "is a UF2 file (RP2040 boards)" in result.stderr and ".bin for ESP32" in result.stderr


def test_esp32s3_image_for_an_esp32_is_refused(flash, tmp_path):
    result = flash("--board", "esp32-inmp441", "--firmware", esp_image(tmp_path / "s3.bin", 9))
    assert result.returncode == 1
    assert "is built for ESP32-S3, the board profile is ESP32" in result.stderr


def test_real_esptool_on_a_missing_port(flash, tmp_path):
    result = flash("--board", "esp32-inmp441", "--firmware", esp_image(tmp_path / "fw.bin", 0),
                   "--port", tmp_path / "ttyUSB7")
    assert result.returncode == 1
    assert f"no board connected at {tmp_path / 'ttyUSB7'}: esptool could not open it" in result.stderr
    assert "check the USB cable" in result.stderr


def test_real_esptool_on_a_port_without_a_bootloader(flash, tmp_path):
    """A pseudo-terminal running MicroPython is a serial port where no ESP ROM answers."""
    micropython = Path(sys.executable).with_name("micropython")
    port = tmp_path / "tty"
    proc = subprocess.Popen(["socat", f"PTY,link={port},raw,echo=0", f"EXEC:{micropython},pty,raw,echo=0"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if port.exists():
                break
            time.sleep(0.01)
        result = flash("--board", "esp32s3", "--firmware", esp_image(tmp_path / "fw.bin", 9), "--port", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 1
    assert "no ESP32-S3 bootloader answered" in result.stderr and "hold the BOOT button" in result.stderr


def test_rp2040_without_drive_says_bootsel(flash, tmp_path):
    result = flash("--board", "rp2040", "--firmware", uf2(tmp_path / "fw.uf2", 0xE48BFF56))
    assert result.returncode == 1
    assert "no RPI-RP2 drive mounted: hold BOOTSEL while plugging in" in result.stderr


def test_rp2350_uf2_is_refused(flash, tmp_path):
    result = flash("--board", "rp2040", "--firmware", uf2(tmp_path / "fw.uf2", 0xE48BFF59))
    assert result.returncode == 1 and "built for RP2350" in result.stderr


def test_uf2_copy_to_a_boot_drive(flash, tmp_path):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n")
    firmware = uf2(tmp_path / "RPI_PICO.uf2", 0xE48BFF56)
    result = flash("--board", "rp2040", "--firmware", firmware, "--drive", drive)
    assert result.returncode == 0, result.stderr
    assert (drive / "RPI_PICO.uf2").read_bytes() == firmware.read_bytes()


def test_a_directory_that_is_not_a_boot_drive_is_refused(flash, tmp_path):
    result = flash("--board", "rp2040", "--firmware", uf2(tmp_path / "fw.uf2", 0xE48BFF56),
                   "--drive", tmp_path)
    assert result.returncode == 1 and "is not an RPI-RP2 boot drive" in result.stderr


def test_pyboard_without_dfu_util_explains_dfu(flash, tmp_path, monkeypatch):
    firmware = tmp_path / "PYBV11.dfu"
    firmware.write_bytes(b"DfuSe\x01" + bytes(100))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    if shutil.which("dfu-util"):
        pytest.skip("dfu-util is on the venv PATH")
    result = flash("--board", "pyboard", "--firmware", firmware)
    assert result.returncode == 1
    assert "dfu-util, which is not installed" in result.stderr and "apt install dfu-util" in result.stderr
    assert "DFU pin to 3V3" in result.stderr


def test_unix_is_not_flashed(flash, tmp_path):
    result = flash("--board", "unix", "--firmware", esp_image(tmp_path / "x.bin", 0))
    assert result.returncode == 1 and "not flashed" in result.stderr
