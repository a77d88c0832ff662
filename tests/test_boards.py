"""Board profiles: every profile is valid, broken ones fail with messages that say what to fix,
and the budget check refuses a model that does not fit, saying by how much."""
import copy
import json

import pytest

from hark import BOARDS_DIR, REPO, boards
from hark.cli import HarkError
from helpers import fake_blob, make_train_words


NAMES = ["esp32-inmp441", "esp32s3", "rp2040", "pyboard", "unix"]


def test_all_expected_profiles_exist():
    assert sorted(NAMES) == boards.available()


@pytest.mark.parametrize("name", NAMES)
def test_profile_is_valid_and_documented(name):
    board = boards.load(name)
    assert board["name"] == name
    assert board["audio"]["sample_rate"] == 16000
    for key in ("ram_budget_bytes", "flash_budget_bytes", "cycles_per_mac_viper"):
        assert len(board["notes"][key]) > 30, f"{name}: notes.{key} must say where the number comes from"
    if board["audio"]["source"] == "i2s":
        assert board["mpy_arch"] in ("xtensawin", "armv6m", "armv7emsp")


def test_arch_and_budgets_match_the_hardware():
    arch = {n: boards.load(n)["mpy_arch"] for n in NAMES}
    assert arch == {"esp32-inmp441": "xtensawin", "esp32s3": "xtensawin", "rp2040": "armv6m",
                    "pyboard": "armv7emsp", "unix": "x64"}
    ram = {n: boards.load(n)["ram_budget_bytes"] for n in NAMES}
    assert 90_000 <= ram["esp32-inmp441"] <= 120_000
    assert 170_000 <= ram["rp2040"] <= 195_000
    assert 85_000 <= ram["pyboard"] <= 102_400


def _broken(tmp_path, edit, name="esp32-inmp441"):
    board = copy.deepcopy(json.loads((BOARDS_DIR / f"{name}.json").read_text()))
    edit(board)
    path = tmp_path / f"{board['name']}.json"
    path.write_text(json.dumps(board))
    with pytest.raises(HarkError) as err:
        boards.load(path)
    return str(err.value)


def test_unknown_key(tmp_path):
    msg = _broken(tmp_path, lambda b: b["audio"]["i2s"].update(sda=21))
    assert "unknown key 'sda'" in msg and "audio.i2s" in msg and "known keys: bits, dc_block, ibuf, id" in msg


def test_missing_key(tmp_path):
    msg = _broken(tmp_path, lambda b: b.pop("flash_budget_bytes"))
    assert "missing key 'flash_budget_bytes'" in msg


def test_wrong_type(tmp_path):
    msg = _broken(tmp_path, lambda b: b.update(ram_budget_bytes="110 KB"))
    assert 'ram_budget_bytes: expected integer, got str ("110 KB")' in msg


def test_bool_is_not_an_integer(tmp_path):
    msg = _broken(tmp_path, lambda b: b["audio"]["i2s"].update(id=True))
    assert "audio.i2s.id: expected integer, got bool" in msg


def test_bad_enum(tmp_path):
    msg = _broken(tmp_path, lambda b: b.update(mpy_arch="armv8"))
    assert 'mpy_arch: "armv8" is not one of' in msg and '"xtensawin"' in msg


def test_all_problems_reported_at_once(tmp_path):
    msg = _broken(tmp_path, lambda b: (b.pop("mcu"), b.update(
        grammar={"mode": "always", "wake_word": None, "command_window_ms": 0})))
    assert "missing key 'mcu'" in msg and "grammar.mode" in msg


def test_rp2040_ws_must_follow_sck(tmp_path):
    msg = _broken(tmp_path, lambda b: b["audio"]["i2s"].update(ws=20), name="rp2040")
    assert "ws = sck + 1" in msg and "GP17" in msg


def test_wake_mode_needs_wake_word(tmp_path):
    msg = _broken(tmp_path, lambda b: b.update(
        grammar={"mode": "wake", "wake_word": None, "command_window_ms": 0}))
    assert "needs a wake word" in msg


def test_name_must_match_file(tmp_path):
    board = json.loads((BOARDS_DIR / "unix.json").read_text())
    path = tmp_path / "other.json"
    path.write_text(json.dumps(board))
    with pytest.raises(HarkError, match="name 'unix' must match the file name 'other'"):
        boards.load(path)


def test_invalid_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{")
    with pytest.raises(HarkError, match="not valid JSON"):
        boards.load(path)


def test_unknown_board_lists_available():
    with pytest.raises(HarkError) as err:
        boards.load("esp8266")
    assert "unknown board 'esp8266'" in str(err.value)
    assert "esp32-inmp441, esp32s3, pyboard, rp2040, unix" in str(err.value)


def _firmware(tmp_path, nbytes):
    path = tmp_path / "code.mpy"
    path.write_bytes(b"M" * nbytes)
    return path


def test_flash_over_budget_says_by_how_much(tmp_path):
    board = boards.load("esp32-inmp441")
    board["flash_budget_bytes"] = 64 * 1024
    model = fake_blob(tmp_path / "m.hark", payload_bytes=66 * 1024)
    report = boards.fits(board, model, [_firmware(tmp_path, 5 * 1024)])
    assert not report.ok
    need = model.stat().st_size + 5 * 1024
    over = -(-(need - 64 * 1024) // 1024)
    (msg,) = report.problems()
    assert f"need {round(need / 1024)} KB of flash, esp32-inmp441 has 64 KB flash budget: {over} KB over" in msg
    assert "fewer weights" in msg and "--width" in msg


def test_ram_hint_names_the_weights_when_they_dominate(tmp_path):
    """A width-96 sized blob (63 KB) on the esp32: the weights, not the arena, are the lever."""
    model = fake_blob(tmp_path / "m.hark", payload_bytes=63 * 1024, arena_bytes=9_700)
    firmware = [_firmware(tmp_path, 33 * 1024)]
    (msg,) = [p for p in boards.fits(boards.load("esp32-inmp441"), model, firmware).problems()
              if "RAM" in p]
    assert "model blob" in msg and "fewer weights" in msg and "hark train --width" in msg
    assert "activations" not in msg
    small = fake_blob(tmp_path / "s.hark", payload_bytes=1000, arena_bytes=120_000)
    (msg,) = boards.fits(boards.load("esp32-inmp441"), small, []).problems()
    assert "tensor arena" in msg and "smaller activations" in msg


def test_train_default_width_is_the_shipped_recipe():
    """`hark train` without --width builds the width the shipped model was trained with (the
    Makefile's train-default recipe), which fits the default board."""
    import re
    from hark.cli import build_parser
    from hark.training import models
    args = build_parser().parse_args(["train", "--data", "x"])
    recipe = re.search(r"--width (\d+)", (REPO / "Makefile").read_text()).group(1)
    model = models.build(args.family, (49, 10), 12, args.width)
    widths = {layer.filters for layer in model.layers if hasattr(layer, "filters")}
    assert widths == {int(recipe)}


def test_ram_uses_the_blob_arena(tmp_path):
    board = boards.load("pyboard")
    small = boards.fits(board, fake_blob(tmp_path / "a.hark", 20_000, arena_bytes=10_000), [])
    assert small.ok and small.ram["arena"] == 10_000 and "arena" not in small.ram_estimated
    big = boards.fits(board, fake_blob(tmp_path / "b.hark", 20_000, arena_bytes=80_000), [])
    assert not big.ok and big.flash_needed <= big.flash_budget
    (msg,) = big.problems()
    over = -(-(big.ram_needed - 93_000) // 1024)
    assert f"pyboard has 91 KB RAM budget: {over} KB over" in msg and "arena 78 KB" in msg


def test_missing_arena_is_estimated(tmp_path):
    report = boards.fits(boards.load("rp2040"), fake_blob(tmp_path / "m.hark", 100, arena_bytes=None), [])
    assert "arena" in report.ram_estimated and report.ram["arena"] == 2 * 49 * 10


def test_profile_labels_must_exist_in_model(tmp_path):
    model = fake_blob(tmp_path / "m.hark", 100, labels=["_silence_", "_unknown_", "yes", "no"])
    with pytest.raises(HarkError) as err:
        boards.fits(boards.load("esp32s3"), model, [])
    msg = str(err.value)
    assert "wake_word 'go' is not a label" in msg and "actions.pins: 'on'" in msg and "yes, no" in msg


@pytest.mark.parametrize("content, expected", [
    (b"not a blob at all....", "not a hark model blob"),
    (None, "length field says .* bytes but the file has .* \\(truncated\\)"),
])
def test_bad_model_files(tmp_path, content, expected):
    path = tmp_path / "m.hark"
    if content is None:
        fake_blob(path, 500)
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.write_bytes(content)
    with pytest.raises(HarkError, match=expected):
        boards.read_blob_meta(path)


def test_missing_model(tmp_path):
    with pytest.raises(HarkError, match="not found.*hark export"):
        boards.read_blob_meta(tmp_path / "nope.hark")


def _info(platform, machine, arch, mpy_version=6, mpy_sub=3):
    return {"platform": platform, "machine": machine, "arch": arch, "mpy_version": mpy_version,
            "mpy_sub": mpy_sub}


# sys.platform, sys.implementation._machine and native arch as stock MicroPython reports them.
REAL_BOARDS = {
    "esp32-inmp441": _info("esp32", "Generic ESP32 module with ESP32", "xtensawin"),
    "esp32s3": _info("esp32", "Generic ESP32S3 module with ESP32S3", "xtensawin"),
    "rp2040": _info("rp2", "Raspberry Pi Pico with RP2040", "armv6m"),
    "pyboard": _info("pyboard", "PYBv1.1 with STM32F405RG", "armv7emsp"),
    "unix": _info("linux", "linux [GCC 14.2.1] version", "x64"),
}


@pytest.mark.parametrize("profile", NAMES)
@pytest.mark.parametrize("actual", NAMES)
def test_chip_identification(profile, actual):
    from types import SimpleNamespace

    from hark.device import Device
    device = SimpleNamespace(port="/dev/ttyX")
    board = boards.load(profile)
    if profile == actual:
        Device.check_board(device, board, REAL_BOARDS[actual], mpy_sub=3)
    else:
        with pytest.raises(HarkError, match="wrong chip: the board at /dev/ttyX is"):
            Device.check_board(device, board, REAL_BOARDS[actual], mpy_sub=3)


def test_old_micropython_is_refused():
    from types import SimpleNamespace

    from hark.device import Device
    device = SimpleNamespace(port="/dev/ttyX")
    old = dict(REAL_BOARDS["rp2040"], mpy_sub=2)
    with pytest.raises(HarkError, match="native .mpy code of version 6.2, this mpy-cross emits 6.3"):
        Device.check_board(device, boards.load("rp2040"), old, mpy_sub=3)
    no_native = dict(REAL_BOARDS["rp2040"], arch=None)
    with pytest.raises(HarkError, match="built without native code"):
        Device.check_board(device, boards.load("rp2040"), no_native, mpy_sub=3)


def test_ram_counts_only_the_code_resident_at_the_peak(tmp_path):
    """blob/plan/configure are dropped before the buffers exist, and an I2S board never imports
    sources."""
    board = boards.load("esp32-inmp441")
    model = fake_blob(tmp_path / "m.hark", 1000, arena_bytes=1000)
    files = []
    for name, size in (("engine", 7000), ("blob", 3000), ("plan", 2000), ("configure", 2500),
                       ("sources", 1500), ("mic", 900)):
        path = tmp_path / f"{name}.mpy"
        path.write_bytes(b"M" * size)
        files.append(path)
    report = boards.fits(board, model, files)
    assert report.ram["code"] == 7000 + 900
    assert report.flash["firmware"] == 7000 + 3000 + 2000 + 2500 + 1500 + 900   # all on flash
    board["audio"]["source"] = "wav"
    assert boards.fits(board, model, files).ram["code"] == 7000 + 1500


def test_profile_may_name_the_words_it_will_have_enrolled():
    """A wake word or action pin naming a word of enroll.words passes `hark deploy`'s check; one
    the profile does not list, or a model label listed as a word to enroll, does not."""
    meta = {"labels": ["_silence_", "_unknown_", "yes", "no"]}
    board = boards.load("esp32-inmp441")
    board["grammar"] = {"mode": "wake+command", "wake_word": "marvin", "command_window_ms": 3000}
    board["actions"]["pins"] = {"sheila": 26, "yes": 27}
    errors = boards.model_errors(board, meta)
    assert "grammar.wake_word 'marvin' is not a label of the model" in errors[0]
    assert "actions.pins: 'sheila'" in errors[1]
    board["enroll"] = {"words": ["marvin", "sheila"]}
    assert boards.model_errors(board, meta) == []
    board["enroll"] = {"words": ["marvin", "sheila", "yes"]}
    assert "enroll.words: 'yes' is a label of the model already" in boards.model_errors(board, meta)[0]


def test_commands_window_needs_the_wake_command_grammar():
    """A profile's command_average_ms (the commands' own window after the wake word) is refused
    on the host for a board that will run commands alone, not first at the board's boot."""
    meta = {"labels": ["_silence_", "_unknown_", "on", "off", "hey_hark"]}
    board = boards.load("esp32-inmp441")
    board["detector"] = {"command_average_ms": 800}
    assert ["detector.command_average_ms" in e for e in boards.model_errors(board, meta)] == [True]
    meta["grammar"] = {"mode": "wake+command", "wake_word": "hey_hark", "command_window_ms": 3000}
    assert boards.model_errors(board, meta) == []       # the blob's grammar, the profile's none


def test_enroll_words_must_be_names_the_firmware_takes(tmp_path):
    msg = _broken(tmp_path, lambda b: b.update(enroll={"words": ["ok", "hey there", "_x"]}))
    assert "enroll.words: 'hey there' must be 1..32 letters" in msg and "'_x'" in msg
    assert "'ok'" not in msg
    msg = _broken(tmp_path, lambda b: b.update(enroll={"word": "marvin"}))
    assert "enroll: missing key 'words'" in msg


ENROLL_NAMES = ["ok", "marvin", "a-b_c", "x" * 32, "x" * 33, "", "hey there", "_x", "x.y",
                "caf\u00e9", "\u0665", "d\u00f8g", "A9"]


def test_host_enroll_name_rule_is_the_firmwares(mpy):
    """tools/boards.py enroll_name_ok copies firmware/enroll.py _check_name (with no labels):
    the same names pass both, run in the real unix port."""
    code = ("import sys, json, enroll\nok = []\nfor w in json.loads(sys.argv[1]):\n try:\n"
            "  enroll._check_name(w, [])\n  ok.append(True)\n except ValueError:\n"
            "  ok.append(False)\nprint(json.dumps(ok))")
    r = mpy(code, json.dumps(ENROLL_NAMES))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [boards.enroll_name_ok(w) for w in ENROLL_NAMES]


@pytest.mark.parametrize("name", ["default", "esp32", "wide"])
def test_make_train_target_reproduces_the_shipped_recipe(name):
    """`make train-<name>`'s `hark train` line (as make expands it) trains what
    models/<name>.train.json records: a shipped model can be made again from the Makefile."""
    from hark.cli import build_parser
    words = make_train_words(f"train-{name}")
    args = build_parser().parse_args(words[words.index("train"):])
    cfg = json.loads((REPO / "models" / f"{name}.train.json").read_text())["config"]
    for key in ("family", "width", "seed", "class_size", "synth", "shift_ms", "unknown_weight",
                "mic_prob", "epochs", "views", "real_share", "synth_ratio", "dc_prob",
                "dc_silence_prob", "teacher", "teacher_extra", "teacher_correct", "soft_weight",
                "temperature"):
        assert getattr(args, key) == cfg[key], key
    assert args.fmax == cfg["spec"]["fmax"]
