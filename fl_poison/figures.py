"""PNG figures of a run, drawn only from its rows (so any run can be re-plotted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fl_poison import plugins  # noqa: E402


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            xs.append(r["round"])
            ys.append(v)
    return xs, ys


def _line_figure(path: Path, rows, title: str, ylabel: str, lines) -> Path:
    """One [0, 1]-scaled line plot per round; ``lines`` = (column, label, style, colour)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, style, colour in lines:
        ax.plot(*_series(rows, key), style, label=label, color=colour, ms=3)
    ax.set_ylim(0, 1)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_figures(run_dir: Path, rows: Sequence[dict[str, Any]], cfg) -> list[Path]:
    """accuracy_loss.png always; attack.png with source accuracy / ASR (and the attack's ``figure_lines``)
    when a source class is set; train_accuracy.png with honest vs malicious client-side accuracy when there
    are attackers."""
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
        src, tgt = cfg["source-class"], cfg["target-class"]
        out.append(_line_figure(run_dir / "attack.png", rows, title, "", [
            ("source_accuracy", f"source accuracy (class {src})", "o-", None),
            ("attack_success_rate", f"attack success ({src}→{tgt})", "s-", None),
            *plugins.get("attack", cfg["attack"]).figure_lines(cfg)]))
    if cfg["attack"] != "none":
        out.append(_line_figure(run_dir / "train_accuracy.png", rows, title, "client-side training accuracy", [
            ("honest_train_accuracy", "honest: during local training", "o-", "tab:blue"),
            ("malicious_train_accuracy", "malicious: during local training", "s-", "tab:red"),
            ("honest_received_model_accuracy", "honest: received model on local data", "o--", "tab:cyan"),
            ("malicious_received_model_accuracy", "malicious: received model on local data", "s--", "tab:orange")]))
    if any(r.get("honest_update_norm_mean") is not None for r in rows):
        out.append(update_norm_figure(run_dir / "update_norms.png", rows, title))
    return out


def update_norm_figure(path: Path, rows: Sequence[dict[str, Any]], title: str) -> Path:
    """Honest vs malicious update norms per round, as the defense received them (ADA Fig. 4)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, style, colour in (
            ("honest_update_norm_mean", "honest (mean)", "o-", "tab:blue"),
            ("honest_update_norm_max", "honest (max)", "o:", "tab:cyan"),
            ("malicious_update_norm_mean", "malicious (mean)", "s-", "tab:red"),
            ("malicious_update_norm_max", "malicious (max)", "s:", "tab:orange")):
        ax.plot(*_series(rows, key), style, label=label, color=colour, ms=3)
    ax.set_xlabel("round")
    ax.set_ylabel("L2 norm of update (local - global)")
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sample_grid_figure(path: Path, rows: Sequence[tuple[str, np.ndarray]], title: str) -> Path:
    """A grid of images: one labelled row per entry of ``rows`` (pixels in [0, 1], ``[N, C, H, W]``)."""
    n_cols = max(int(imgs.shape[0]) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(0.6 * n_cols + 0.9, 0.65 * len(rows) + 0.5), squeeze=False)
    for (label, imgs), line in zip(rows, axes):
        for j, ax in enumerate(line):
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < imgs.shape[0]:
                img = np.transpose(imgs[j], (1, 2, 0))
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        line[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
