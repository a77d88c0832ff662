"""Metrics and plots: accuracy, per-class recall, confusion matrix, training curves."""
from collections import Counter

import numpy as np

from .dataset import UNKNOWN


def classification_metrics(y_true, y_pred, labels) -> dict:
    """{"accuracy", "n", "per_class": {label: {"recall", "n"}}, "confusion", "labels"}."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(labels)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    for i, label in enumerate(labels):
        n = int(confusion[i].sum())
        per_class[label] = {"recall": float(confusion[i, i] / n) if n else None, "n": n}
    n = int(len(y_true))
    return {"accuracy": float((y_true == y_pred).mean()) if n else None, "n": n,
            "per_class": per_class, "confusion": confusion.tolist(), "labels": list(labels)}


def unknown_words(words, y_true, y_pred, labels, unknown=UNKNOWN) -> list:
    """Per word the model files under `unknown`: [{"word", "n", "rejected", "heard_as"}], the
    least rejected first; heard_as counts the labels it was taken for instead. Which words a
    model takes for commands decides its false accepts, and the 12-class recall hides them."""
    k = labels.index(unknown)
    heard = {}
    for w, t, p in zip(words, y_true, y_pred):
        if t == k:
            heard.setdefault(w, Counter())[labels[p]] += 1
    rows = []
    for w, counts in heard.items():
        n = sum(counts.values())
        rejected = counts.pop(unknown, 0) / n
        rows.append({"word": w, "n": n, "rejected": rejected,
                     "heard_as": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))})
    return sorted(rows, key=lambda r: (r["rejected"], r["word"]))


def format_unknown_words(rows, limit: int = 10) -> str:
    lines = [f"unknown words, least rejected first ({min(limit, len(rows))} of {len(rows)}):"]
    for r in rows[:limit]:
        taken = ", ".join(f"{label} {n}" for label, n in list(r["heard_as"].items())[:3])
        lines.append(f"  {r['word']:>10} {100 * r['rejected']:5.1f}% rejected  (n={r['n']})"
                     + (f"  heard as {taken}" if taken else ""))
    return "\n".join(lines)


def pct(share, digits=1) -> str:
    """A share as a percentage for a table; — for a figure that was not measured (None)."""
    return "—" if share is None else f"{100 * share:.{digits}f}%"


def num(value, fmt="{:,}") -> str:
    """A number for a table; — for a figure that was not measured (None)."""
    return "—" if value is None else fmt.format(value)


def format_metrics(metrics: dict, title: str = "") -> str:
    lines = [title] if title else []
    acc = metrics["accuracy"]
    lines.append(f"accuracy {100 * acc:.2f}% on {metrics['n']} clips" if acc is not None
                 else "no clips")
    lines.append("per-class recall:")
    for label, v in metrics["per_class"].items():
        r = "   n/a" if v["recall"] is None else f"{100 * v['recall']:5.1f}%"
        lines.append(f"  {label:>10} {r}  (n={v['n']})")
    labels = metrics["labels"]
    width = max(6, max(len(l) for l in labels) + 1)
    lines.append("confusion (rows: true, columns: predicted):")
    lines.append(" " * width + "".join(f"{l[:6]:>7}" for l in labels))
    for label, row in zip(labels, metrics["confusion"]):
        lines.append(f"{label:>{width}}" + "".join(f"{v:7d}" for v in row))
    return "\n".join(lines)


def plot_confusion(metrics: dict, path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion"], float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    labels = metrics["labels"]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = metrics.get("accuracy")
    ax.set_title(f"{title}  accuracy {100 * acc:.1f}%" if acc is not None else title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(history: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(history["loss"], label="train")
    a.plot(history["val_loss"], label="validation")
    a.set_title("loss")
    b.plot(history["accuracy"], label="train")
    b.plot(history["val_accuracy"], label="validation")
    b.set_title("accuracy")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
