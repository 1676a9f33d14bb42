"""The PCA view of clients' output-neuron updates (Tolpegin Fig. 8, LFighter Figs. 1–6).

Written from data saved in the run directory (``captured_updates.npz``), so it
can be redrawn later without re-running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def neuron_features(rows: np.ndarray, neurons: Sequence[int]) -> np.ndarray:
    """Each client's parameters of the given output neurons, concatenated: [K, len(neurons)*(H+1)]."""
    return rows[:, list(neurons), :].reshape(rows.shape[0], -1)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Standardise columns, then project onto the first two principal components."""
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if z.shape[0] < 2:
        return np.zeros((z.shape[0], 2))
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    proj = z @ vt[:2].T
    return proj if proj.shape[1] == 2 else np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))


def _neurons(rows: np.ndarray, cfg) -> list[int]:
    if cfg["source-class"] >= 0:
        return [cfg["source-class"], cfg["target-class"]]
    mags = np.linalg.norm(rows, axis=2).sum(axis=0)
    return [int(i) for i in np.argsort(mags)[::-1][:2]]


def capture_figure(run_dir: Path, captured: list[dict[str, Any]], malicious: Sequence[int], cfg) -> Path:
    """Save the captured rows and draw up to four rounds (first, two middle, last)."""
    np.savez_compressed(
        run_dir / "captured_updates.npz",
        **{f"round{c['round']}_rows": c["rows"] for c in captured},
        **{f"round{c['round']}_clients": np.asarray(c["clients"]) for c in captured},
        **{f"round{c['round']}_kept": np.asarray(c["kept"], dtype=bool) for c in captured},
    )
    pick = sorted({0, len(captured) // 3, 2 * len(captured) // 3, len(captured) - 1})
    fig, axes = plt.subplots(1, len(pick), figsize=(4 * len(pick), 4), squeeze=False)
    mal = set(malicious)
    for ax, i in zip(axes[0], pick):
        c = captured[i]
        neurons = _neurons(c["rows"], cfg)
        xy = pca_2d(neuron_features(c["rows"], neurons))
        for cid, (x, y), kept in zip(c["clients"], xy, c["kept"] or [True] * len(xy)):
            ax.scatter(x, y, c="tab:red" if cid in mal else "tab:blue", marker="o" if kept else "x", s=40)
        ax.set_title(f"round {c['round']} · neurons {neurons}", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
    handles = [plt.Line2D([], [], color="tab:blue", marker="o", ls="", label="honest, kept"),
               plt.Line2D([], [], color="tab:red", marker="o", ls="", label="malicious, kept"),
               plt.Line2D([], [], color="gray", marker="x", ls="", label="dropped / flagged")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(f"output-neuron updates · defense={cfg['defense']} · attack={cfg['attack']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    path = run_dir / "update_pca.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
