"""`hark firmware build` (tools/firmware.py): the freeze manifest and the port's build. The
manifest, the target choice and the errors are checked always; building MicroPython itself
takes minutes of CPU and the arm toolchain, so that test runs only in `make firmware-test`."""
import os
import shutil
from pathlib import Path

import pytest

from hark import FIRMWARE_DIR, MODELS_DIR, SAMPLES_DIR, boards, deploy, firmware, qemu
from hark.cli import HarkError, main

CLIP = SAMPLES_DIR / "yes__0ab3b47d_nohash_0.wav"


def manifest_calls(text: str) -> list:
    """Run a manifest.py as MicroPython's tools/manifestfile.py does (its include/freeze calls)."""
    calls = []
    exec(text, {"include": lambda path, **kw: calls.append(("include", path)),
                "freeze": lambda path, script=None, opt=None: calls.append(("freeze", path, script, opt))})
    return calls


def test_manifest_freezes_what_deploy_sends_as_mpy(tmp_path):
    board = boards.load("pyboard")
    built = deploy.build(board, build_dir=tmp_path)
    sent = sorted(p.stem + ".py" for p in built if p.suffix == ".mpy")
    calls = manifest_calls(firmware.manifest_text(firmware.target_for(board)))
    assert calls[0] == ("include", "$(PORT_DIR)/boards/manifest.py")    # stock features kept
    (_, path, scripts, opt), = calls[1:]
    assert Path(path) == FIRMWARE_DIR.resolve()
    assert sorted(scripts) == sent and "main.py" not in scripts
    assert opt == 3     # as deploy's mpy-cross -O3


def test_stock_manifest_freezes_no_hark_module():
    calls = manifest_calls(firmware.manifest_text(firmware.QEMU, frozen=False))
    assert calls == [("include", "$(BOARD_DIR)/manifest.py")]


def test_manifest_follows_the_firmware_dir(tmp_path):
    (tmp_path / "main.py").write_text("import a\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    calls = manifest_calls(firmware.manifest_text(firmware.QEMU, firmware_dir=tmp_path))
    assert calls[1][1:3] == (str(tmp_path.resolve()), ("a.py",))


@pytest.mark.parametrize("name, port, board", [("pyboard", "stm32", "PYBV11"), ("rp2040", "rp2", "RPI_PICO"),
                                               ("esp32-inmp441", "esp32", "ESP32_GENERIC"),
                                               ("esp32s3", "esp32", "ESP32_GENERIC_S3")])
def test_profile_picks_the_port(name, port, board):
    target = firmware.target_for(boards.load(name))
    assert (target.port, target.board) == (port, board)


def test_targets_that_make_no_sense_are_refused():
    with pytest.raises(HarkError, match="unix port needs no firmware image"):
        firmware.target_for(boards.load("unix"))
    with pytest.raises(HarkError, match="--qemu stands in for a Cortex-M4F board"):
        firmware.target_for(boards.load("rp2040"), qemu=True)
    assert firmware.target_for(boards.load("pyboard"), qemu=True) is firmware.QEMU


def test_board_port_without_a_source_tree_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HARK_MICROPYTHON", raising=False)
    assert main(["firmware", "build", "--board", "pyboard", "--frozen", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--micropython DIR" in err and "FROZEN_MANIFEST=" + str(tmp_path / "manifest.py") in err
    assert "BOARD=PYBV11" in err and "make -C MICROPYTHON/mpy-cross" in err
    assert manifest_calls((tmp_path / "manifest.py").read_text())[1][0] == "freeze"


def test_missing_toolchain_and_submodules_are_listed(tmp_path, monkeypatch, capsys):
    source = tmp_path / "micropython"
    (source / "ports" / "stm32").mkdir(parents=True)
    (source / "lib" / "stm32lib").mkdir(parents=True)      # an uninitialised submodule is empty
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    code = main(["firmware", "build", "--board", "pyboard", "--frozen", "--micropython", str(source),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "arm-none-eabi-gcc (Debian/Ubuntu: apt-get install gcc-arm-none-eabi" in err
    assert "lib/stm32lib (in " in err and "submodules" in err and "lib/micropython-lib" in err
    assert "board PYBV11 (not in " in err
    assert f"make -C {source.resolve()}/ports/stm32 BOARD=PYBV11" in err


def test_a_tree_without_the_port_is_named(tmp_path, capsys):
    (tmp_path / "src" / "ports" / "qemu").mkdir(parents=True)
    code = main(["firmware", "build", "--board", "rp2040", "--frozen", "--micropython", str(tmp_path / "src"),
                 "--out", str(tmp_path / "out")])
    assert code == 1 and "has no ports/rp2" in capsys.readouterr().err


def test_an_unpatched_tree_for_qemu_is_named(tmp_path, capsys):
    (tmp_path / "src" / "ports" / "qemu" / "boards").mkdir(parents=True)
    code = main(["firmware", "build", "--board", "pyboard", "--qemu", "--frozen",
                 "--micropython", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
    assert code == 1 and "board HARK_AN386" in (err := capsys.readouterr().err) and "hark-qemu.patch" in err


def test_manifest_only_prints_the_build(tmp_path, capsys):
    assert main(["firmware", "build", "--board", "esp32s3", "--frozen", "--manifest-only",
                 "--micropython", str(tmp_path), "--out", str(tmp_path / "out"), "-j", "3"]) == 0
    out = capsys.readouterr().out
    assert f"make -C {tmp_path}/ports/esp32 BOARD=ESP32_GENERIC_S3" in out and "-j3" in out
    assert (tmp_path / "out" / "manifest.py").is_file()


def test_help_teaches_the_targets_and_the_next_steps(capsys):
    with pytest.raises(SystemExit):
        main(["firmware", "build", "--help"])
    out = capsys.readouterr().out
    for text in ("--frozen", "--qemu", "--micropython", "make firmware-deps", "hark flash --board pyboard",
                 "hark deploy --board pyboard --frozen", "ESP-IDF", "pico-sdk", "run_hark_qemu.sh --elf"):
        assert text in out, text


def test_weights_module_holds_the_blobs_crc_and_weights(tmp_path):
    from hark.training.blob import read_blob
    model = MODELS_DIR / "default.hark"
    path = firmware.weights_module(model, tmp_path)
    scope = {}
    exec(compile(path.read_text().split("import blob", 1)[1], str(path), "exec"), scope)
    assert scope["CRC"] == model.read_bytes()[12:16]
    assert scope["W"] == read_blob(model)[1]["w"].tobytes()
    calls = manifest_calls(firmware.manifest_text(firmware.QEMU, weights=path))
    assert calls[-1] == ("freeze", str(tmp_path.resolve()), "model.py", 3)


def test_model_needs_frozen(tmp_path, capsys):
    assert main(["firmware", "build", "--board", "pyboard", "--qemu", "--model",
                 str(MODELS_DIR / "default.hark"), "--out", str(tmp_path)]) == 1
    assert "add --frozen" in capsys.readouterr().err


def _with_weights(tmp_path, model):
    """The firmware with the generated model.py importable beside it, as the frozen image has it."""
    fw = tmp_path / "fw"
    shutil.copytree(FIRMWARE_DIR, fw, ignore=shutil.ignore_patterns("frozen", "__pycache__"))
    shutil.copytree(FIRMWARE_DIR / "frozen", tmp_path / "frozen")
    firmware.weights_module(model, fw, firmware_dir=tmp_path)
    return fw


def test_frozen_weights_detect_like_the_file_and_refuse_another_model(tmp_path):
    """firmware/frozen/model.py in the unix port: start-up takes its weights in place of the
    file's (same detections), and a blob on the filesystem that is not theirs is refused."""
    from hark.unixport import run_firmware
    model, board = MODELS_DIR / "default.hark", boards.load("pyboard")
    fw = _with_weights(tmp_path, model)
    plain = run_firmware(model, board, wav=CLIP, pad_ms=1000, heapsize=256 * 1024)
    frozen = run_firmware(model, board, wav=CLIP, pad_ms=1000, heapsize=256 * 1024, firmware_dir=fw)
    assert frozen.detections == plain.detections and [d.label for d in plain.detections] == ["yes"]
    with pytest.raises(HarkError, match="the weights frozen into the firmware are another model's"):
        run_firmware(MODELS_DIR / "tiny_conv.hark", board, wav=CLIP, heapsize=256 * 1024, firmware_dir=fw)


def test_deploy_frozen_is_refused_for_the_unix_port(capsys):
    assert main(["deploy", "--board", "unix", "--frozen", "--build-only"]) == 1
    assert "the unix port has no such image" in capsys.readouterr().err


def test_deploy_build_frozen_keeps_main_and_config_only(tmp_path):
    built = deploy.build(boards.load("pyboard"), build_dir=tmp_path, frozen=True)
    assert sorted(p.name for p in built) == ["config.json", "main.py"]
    leftovers = deploy.frozen_leftovers()
    assert "engine.mpy" in leftovers and "engine.py" in leftovers and "main.py" not in leftovers


needs_build = pytest.mark.skipif(
    not os.environ.get("HARK_FIRMWARE_BUILD") or not shutil.which("arm-none-eabi-gcc") or bool(qemu.missing()),
    reason="builds MicroPython for QEMU (minutes of CPU): `make firmware-test`, which installs the arm "
           "toolchain (gcc-arm-none-eabi) and QEMU" if not os.environ.get("HARK_FIRMWARE_BUILD") else
           f"needs arm-none-eabi-gcc (`make firmware-deps`) and QEMU ({qemu.missing() or 'present'})")


@needs_build
def test_frozen_qemu_image_builds_and_detects_like_the_unix_port(capsys):
    from hark.unixport import run_firmware

    assert main(["firmware", "build", "--board", "pyboard", "--qemu", "--frozen", "-j", "1"]) == 0
    out = capsys.readouterr().out
    elf = firmware.BUILD_ROOT / "qemu-frozen" / "hark-qemu-frozen.elf"
    assert f"image: {elf}" in out and "B of flash" in out
    model, board = MODELS_DIR / "default.hark", boards.load("pyboard")
    unix = run_firmware(model, board, wav=CLIP, pad_ms=1000, heapsize=256 * 1024)
    with qemu.Image(model, board, CLIP, elf=elf, frozen=True) as image:
        names = sorted(p for p in os.listdir(image.path.parent / "files") if p.endswith(".mpy"))
        run = image.run(256 * 1024, stats=True)
    assert names == [] and run.ok, run.out[-800:]
    assert run.detections == [str(d) for d in unix.detections]
    # the firmware's code is in flash: far less live heap than the stock build's ~79 KB
    with qemu.Image(model, board, CLIP) as image:
        stock = image.run(256 * 1024, stats=True)
    assert run.stats["heap_live"] < stock.stats["heap_live"] - 16 * 1024, (run.stats, stock.stats)


@needs_build
def test_frozen_weights_image_keeps_them_out_of_the_heap(capsys):
    model, board = MODELS_DIR / "default.hark", boards.load("pyboard")
    for more in (["--model", str(model)], []):     # (make rebuilds only what changed)
        assert main(["firmware", "build", "--board", "pyboard", "--qemu", "--frozen", "-j", "1"] + more) == 0
    elf = firmware.BUILD_ROOT / "qemu-frozen-weights" / "hark-qemu-frozen-weights.elf"
    with qemu.Image(model, board, CLIP, elf=elf, frozen=True) as image:
        run = image.run(256 * 1024, stats=True)
    with qemu.Image(model, board, CLIP, elf=firmware.BUILD_ROOT / "qemu-frozen" / "hark-qemu-frozen.elf",
                    frozen=True) as image:
        code_only = image.run(256 * 1024, stats=True)
    assert run.ok and run.detections == code_only.detections, run.out[-800:]
    # the 27,948 weight bytes are read from flash
    assert run.stats["heap_live"] < code_only.stats["heap_live"] - 25_000, (run.stats, code_only.stats)
    with qemu.Image(MODELS_DIR / "tiny_conv.hark", board, CLIP, elf=elf, frozen=True) as image:
        other = image.run(256 * 1024)
    assert other.exit == 2 and "the weights frozen into the firmware are another model's" in other.out
