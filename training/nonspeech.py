"""Sounds that are not speech and must not fire a detection: silence, hiss and the DC steps a
microphone with an offset produces when audio starts. `hark bench` plays each through the
firmware and reports any detection; tests/test_edge_audio.py asserts none for the shipped model.
"""
import numpy as np

RATE = 16000


def quiet_signals(seconds: float = 3.0, seed: int = 11) -> dict:
    """name -> int16 samples, each `seconds` long."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    raw = {
        "digital silence": np.zeros(n),
        "faint hiss (-70 dBFS)": rng.normal(0, 10, n),
        "DC step to +20000": np.full(n, 20000),
        "DC step to -32768": np.full(n, -32768),
        "DC 10000 + noise": 10000 + rng.normal(0, 300, n),
    }
    return {name: np.clip(np.round(x), -32768, 32767).astype(np.int16) for name, x in raw.items()}


def offset_signals(seconds: float = 3.0, seed: int = 123) -> dict:
    """More DC offsets, at levels training never draws exactly (`--dc-prob`, `--dc-silence-prob`
    draw from a range): +-3000, 8000, 15000 and 25000, bare and with noise, and an AC-coupled
    microphone's step of +-20000 decaying with a 0.3 s time constant. name -> int16 samples."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    raw = {}
    for level in (3000, 8000, 15000, 25000):
        for sign in (1, -1):
            raw[f"DC {sign * level:+d}"] = np.full(n, sign * level, float)
            raw[f"DC {sign * level:+d} + noise"] = sign * level + rng.normal(0, 300, n)
    for sign in (1, -1):
        raw[f"decaying step {sign * 20000:+d}"] = sign * 20000 * np.exp(-np.arange(n) / (0.3 * RATE))
    return {name: np.clip(np.round(x), -32768, 32767).astype(np.int16) for name, x in raw.items()}


def write_signals(folder, signals=None) -> dict:
    """signals (default: quiet_signals) as 16-bit WAVs in folder: {name: path}, written once
    for any number of models."""
    from pathlib import Path

    import soundfile as sf
    paths = {}
    for i, (name, x) in enumerate((signals or quiet_signals()).items()):
        paths[name] = Path(folder) / f"nonspeech_{i}.wav"
        sf.write(paths[name], x, RATE, subtype="PCM_16")
    return paths


def detections(model, board: dict, wavs: dict, pad_ms: int = 1000) -> dict:
    """{signal name: ["label@seconds", ...]} from the firmware on each of write_signals' WAVs;
    every list is empty for a well-behaved model."""
    from hark.unixport import run_firmware
    return {name: [f"{d.label}@{d.time_s:.2f}" for d in run_firmware(model, board, wav=wav,
                                                                   pad_ms=pad_ms).detections]
            for name, wav in wavs.items()}


def main(argv=None) -> int:
    """`python -m hark.training.nonspeech MODEL [--board B]`: play every quiet signal through the
    firmware; exit 1 (naming signal and detection) if the model fires on any. `make
    train-default` runs it before a model is shipped."""
    import argparse
    import json
    import tempfile
    from pathlib import Path

    from hark import boards

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("model", type=Path, help="model blob")
    p.add_argument("--board", default="unix")
    p.add_argument("--offsets", action="store_true",
                   help="also play offset_signals: 18 more DC offsets and steps")
    p.add_argument("--json", type=Path, help="also write {signal: [detections]} here")
    args = p.parse_args(argv)
    signals = {**quiet_signals(), **(offset_signals() if args.offsets else {})}
    with tempfile.TemporaryDirectory() as tmp:
        found = detections(args.model, boards.load(args.board), write_signals(tmp, signals))
    fired = {name: dets for name, dets in found.items() if dets}
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))
    for name, dets in found.items():
        print(f"{name}: {', '.join(dets) or 'quiet'}")
    if fired:
        print(f"{args.model} fires on non-speech input ({', '.join(fired)}): pick another seed or "
              "retrain; do not ship it")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
