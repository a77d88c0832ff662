"""`hark bench --quick` end to end: every number is produced and sane (no accuracy thresholds)."""
import json
import math

import pytest

from hark import MODELS_DIR, REPO
from hark.cli import main
from hark.training.bench import update_readme

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(shared_data, tmp_path_factory):
    if not (MODELS_DIR / "default.hark").exists():
        pytest.skip("no models/default.hark")
    out = tmp_path_factory.mktemp("bench")
    tracked = (REPO / "README.md").read_bytes()
    assert main(["bench", "--quick", "--data", str(shared_data), "--out", str(out)]) == 0
    assert (REPO / "README.md").read_bytes() == tracked, "bench --quick rewrote the README"
    readme = out / "README.md"
    readme.write_text("# x\n\n<!-- bench:start -->\nold table\n<!-- bench:end -->\n\nafter\n")
    update_readme(readme, (out / "results.md").read_text())
    return json.loads((out / "results.json").read_text()), out, readme


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def test_machine_and_stream(bench):
    res, out, _ = bench
    m = res["machine"]
    assert m["cpu"] and m["python"] and "MicroPython" in m["micropython"] and m["date_utc"]
    assert res["stream"]["targets"] > 0 and res["stream"]["seconds"] == pytest.approx(45)
    assert (out / "stream.wav").stat().st_size > 45 * 32000


def test_every_model_has_sane_numbers(bench):
    res, _, _ = bench
    assert "default" in res["models"]
    for name, r in res["models"].items():
        assert r["errors"] == {}, name
        s = r["static"]
        assert s["params"] > 0 and s["blob_bytes"] > s["weight_bytes"] > 0 and s["arena_bytes"] > 0
        assert abs(s["macs_per_second"] - 50 * s["macs_per_inference"]) <= 50
        if s["streaming"]:
            sv = r["streaming_vs_windowed"]
            assert sv["identical_outputs"] and 0 < s["macs_per_inference"] < s["macs_per_window"]
            assert sv["windowed"]["macs_per_hop"] == s["macs_per_window"]
        for kind in ("int8_librosa", "int8_device"):
            a = r["accuracy"][kind]
            assert 0 <= a["accuracy"] <= 1 and a["n"] > 20
            assert a["accuracy"] > 1 / 12, f"{name} {kind} is at chance"
        assert abs(r["accuracy"]["device_minus_librosa_points"]) <= 100
        u = r["unixport"]
        hop = u["us_per_hop"]
        assert 0 < hop["frontend"] < 20000 and 0 < hop["infer"] and hop["total"] >= hop["infer"]
        assert 0 < u["real_time_factor"] < 5
        assert 0 < u["heap_peak"] < 2_000_000 and u["frames"] >= 45 * 50
        st = r["stream"]
        assert 0 <= st["frr"] <= 1 and st["false_accepts"] >= 0 and _finite(st["fa_per_hour"])
        assert st["hits"] + st["misses"] == st["targets"]
        for board in r["boards"].values():
            assert board["est_ms_per_inference"] > 0
            fits = board["fits_ram_budget_unix_measure"]   # measured at the budget itself
            if board["ram_budget_bytes"] >= r["min_heap_bytes"] + 20_000:
                assert fits is True
            elif board["ram_budget_bytes"] < u["heap_live"]:
                assert fits is False
        assert u["heap_live"] <= r["min_heap_bytes"] <= 2_000_000
        assert _finite(r["vs_default"]["macs_x"])
    assert res["models"]["default"]["vs_default"]["us_per_hop_x"] == pytest.approx(1.0)


def test_non_speech_is_played_to_every_model(bench):
    from hark.training.nonspeech import quiet_signals
    res, out, _ = bench
    for name, r in res["models"].items():
        assert list(r["non_speech"]) == list(quiet_signals()), name
    assert all(d == [] for d in res["models"]["default"]["non_speech"].values())   # shipped: quiet
    assert "**Non-speech input**" in (out / "results.md").read_text()


def test_markdown_and_readme(bench):
    res, out, readme = bench
    md = (out / "results.md").read_text()
    for name in res["models"]:
        assert f"| {name} |" in md
    text = readme.read_text()
    assert "old table" not in text and md.strip() in text and text.endswith("after\n")


def test_quick_refuses_a_readme(tmp_path, capsys):
    assert main(["bench", "--quick", "--data", str(tmp_path), "--readme", str(tmp_path / "R.md")]) == 1
    assert "--quick never writes a README" in capsys.readouterr().err


def test_eval_clips_add_silence_unless_words_exclude_it(shared_data):
    """The accuracy the bench reports includes `_silence_` (a third of the scarce classes)."""
    from hark.training.dataset import LABELS
    from hark.training.evaluate import eval_clips
    _, _, words = eval_clips(shared_data, LABELS, max_per_word=2)
    assert words.count("_silence_") >= 1 and len(set(words)) > 10
    assert "_silence_" not in eval_clips(shared_data, LABELS, words=["on"])[2]
    assert "_silence_" in eval_clips(shared_data, LABELS, words=["on", "_silence_"])[2]


def test_qemu_figures_of_the_default_model(bench):
    res, out, _ = bench
    q = res["models"]["default"]["qemu"]
    if "skipped" in q:
        pytest.skip(q["skipped"])
    assert q["min_heap"] > q["min_heap_free_at_start"] > q["heap_live"] > 0
    st = q["insns_per_hop_stage"]
    assert 0 < st["frontend"] + st["infer"] + st["detect"] <= 1.05 * q["insns_per_hop"]
    assert abs(q["estimate_error"]) < 0.5
    assert "32-bit: QEMU Cortex-M4F" in (out / "results.md").read_text()
