"""PNG figures of a run, drawn only from its rows (so any run can be re-plotted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            xs.append(r["round"])
            ys.append(v)
    return xs, ys


def run_figures(run_dir: Path, rows: Sequence[dict[str, Any]], cfg) -> list[Path]:
    """accuracy_loss.png always; attack.png with source accuracy / ASR when a source class is set;
    train_accuracy.png with honest vs malicious client-side accuracy when there are attackers."""
    out = []
    title = f"{cfg['dataset']} · {cfg['partition']} · attack={cfg['attack']} · defense={cfg['defense']}"
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(*_series(rows, "accuracy"), "o-", color="tab:blue", label="test accuracy", ms=3)
    ax1.set_xlabel("round")
    ax1.set_ylabel("accuracy", color="tab:blue")
    ax1.set_ylim(0, 1)
    ax2 = ax1.twinx()
    ax2.plot(*_series(rows, "loss"), "s--", color="tab:red", label="test loss", ms=3)
    ax2.set_ylabel("test loss", color="tab:red")
    ax1.set_title(title, fontsize=9)
    fig.tight_layout()
    out.append(run_dir / "accuracy_loss.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)

    if cfg["source-class"] >= 0:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(*_series(rows, "source_accuracy"), "o-", label=f"source accuracy (class {cfg['source-class']})", ms=3)
        ax.plot(*_series(rows, "attack_success_rate"), "s-",
                label=f"attack success ({cfg['source-class']}→{cfg['target-class']})", ms=3)
        ax.set_ylim(0, 1)
        ax.set_xlabel("round")
        ax.legend()
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        out.append(run_dir / "attack.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)

    if cfg["attack"] != "none":
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(*_series(rows, "honest_train_accuracy"), "o-", label="honest clients", ms=3)
        ax.plot(*_series(rows, "malicious_train_accuracy"), "s-", color="tab:red", label="malicious clients", ms=3)
        ax.set_ylim(0, 1)
        ax.set_xlabel("round")
        ax.set_ylabel("client-side training accuracy")
        ax.legend()
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        out.append(run_dir / "train_accuracy.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    return out
