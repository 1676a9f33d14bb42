"""The GAN attack's (G, T) vulnerability matrix: the seed blog's heatmap and histogram, from run directories.

Per (defense, G, T): the attack accuracy averaged over training
(``summary.json["mean_over_rounds"]["attack_success_rate"]``, the blog's
measure) averaged over seeds, next to the no-attack G -> T confusion rate of
the same federation (``mean_confusion_rates[G][T]`` of ``attack = none`` runs
with the same data set, split size, clients and rounds), so "above chance" is
visible.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fl_poison.report import NOT_GROUPED

#: Config keys a no-attack baseline must share with an attack run to stand beside it.
BASELINE_KEYS = ("dataset", "train-samples", "num-clients", "clients-per-round", "num-rounds", "partition", "model",
                 "lr", "local-epochs", "batch-size")


def _setup(cfg: dict[str, Any]) -> str:
    return json.dumps([cfg.get(k) for k in BASELINE_KEYS])


def _mean(vals: Sequence[float]) -> float | None:
    ok = [v for v in vals if v is not None and np.isfinite(v)]
    return float(np.mean(ok)) if ok else None


#: Config keys that never make two GAN runs different settings: the report's replicate / output keys and the pair.
NOT_A_SETTING = NOT_GROUPED + ("source-class", "target-class")


def _setting(cfg: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in sorted(cfg.items()) if k not in NOT_A_SETTING}, default=str)


def setting_labels(runs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """A short name per GAN setting of ``runs``: the keys in which settings differ (``""`` when there is one)."""
    cfgs = {_setting(r["config"]): r["config"] for r in runs if r["config"].get("attack") == "gan"}
    keys = sorted({k for c in cfgs.values() for k in c if k not in NOT_A_SETTING and k != "defense"  # a column
                   and len({json.dumps(d.get(k), default=str) for d in cfgs.values()}) > 1})
    return {s: ", ".join(f"{k}={c.get(k)}" for k in keys) for s, c in cfgs.items()}


def pair_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setting, G, T) of the ``attack = gan`` runs, with the matching baseline rate.

    A setting is everything but the seed and the pair, so runs that differ in any other key (a defense,
    ``gan-samples``, ``lr``) never share a row; ``setting`` names the keys in which they differ.
    """
    base: dict[str, list[np.ndarray]] = {}
    for r in runs:
        rates = r["summary"].get("mean_confusion_rates")
        if r["config"].get("attack") == "none" and rates is not None:
            base.setdefault(_setup(r["config"]), []).append(np.asarray(rates, dtype=float))
    labels = setting_labels(runs)
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        c = r["config"]
        if c.get("attack") == "gan":
            groups.setdefault((c.get("defense"), labels[_setting(c)], _setup(c), c["source-class"],
                               c["target-class"]), []).append(r)
    rows = []
    for (defense, label, setup, g, t), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1:])):
        acc = [m["summary"].get("mean_over_rounds", {}).get("attack_success_rate") for m in members]
        rec = [m["summary"].get("mean_over_rounds", {}).get("gan_recognised") for m in members]
        final = [m["summary"].get("accuracy") for m in members]
        bl = base.get(setup)
        rows.append({"defense": defense, "setting": label, "G": g, "T": t, "n": len(members),
                     "runs": members,
                     "attack_accuracy": _mean(acc),
                     "attack_accuracy_std": float(np.std([a for a in acc if a is not None], ddof=1))
                     if sum(a is not None for a in acc) > 1 else 0.0,
                     "no_attack_rate": float(np.mean([b[g][t] for b in bl])) if bl else None,
                     "gan_recognised": _mean(rec), "final_accuracy": _mean(final)})
    return rows


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def write_gan_report(runs: Sequence[dict[str, Any]], out: Path, figures: bool = True) -> list[Path]:
    """``gan_pairs.md``, ``gan_claims.md``, per setting ``gan_attack_accuracy_<defense>[_<setting>].png``, ``gan_histogram.png``."""
    rows = pair_rows(runs)
    if not rows:
        return []
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| defense | G | T | seeds | attack accuracy (mean over training) | no-attack G→T rate | "
             "generated G recognised | final accuracy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        who = f"{r['defense']}, {r['setting']}" if r["setting"] else r["defense"]
        lines.append(f"| {who} | {r['G']} | {r['T']} | {r['n']} | {_f(r['attack_accuracy'])} ± "
                     f"{r['attack_accuracy_std']:.3f} | {_f(r['no_attack_rate'])} | {_f(r['gan_recognised'])} | "
                     f"{_f(r['final_accuracy'])} |")
    md = out / "gan_pairs.md"
    md.write_text("\n".join(lines) + "\n")
    files = [md, write_claims(rows, runs, out)]
    if figures:
        files += _figures(rows, out)
    return files


def write_claims(rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], out: Path) -> Path:
    """``gan_claims.md``: the blog's summary claims checked on each setting's pairs (rules in :mod:`clients.gan_claims`)."""
    from clients.gan_claims import check_claims, claims_markdown

    lines = ["# The GAN blog's claims (MNIST) on our (G, T) matrix", "",
             "Each sentence of the blog turned into a rule (thresholds ours; `clients/gan_claims.py`).", ""]
    for d, label in dict.fromkeys((r["defense"], r["setting"]) for r in rows):
        mine = [r for r in rows if (r["defense"], r["setting"]) == (d, label)]
        title = f"{d}, {label}" if label else str(d)
        lines += claims_markdown(title, check_claims(mine, [m for r in mine for m in r["runs"]]))
    path = out / "gan_claims.md"
    path.write_text("\n".join(lines))
    return path


def _figures(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    groups = list(dict.fromkeys((r["defense"], r["setting"]) for r in rows))
    n = max(max(r["G"], r["T"]) for r in rows) + 1
    for d, label in groups:
        z = np.full((n, n), np.nan)
        b = np.full((n, n), np.nan)
        for r in rows:
            if (r["defense"], r["setting"]) == (d, label) and r["attack_accuracy"] is not None:
                z[r["G"], r["T"]] = r["attack_accuracy"]
                b[r["G"], r["T"]] = np.nan if r["no_attack_rate"] is None else r["no_attack_rate"]
        fig, ax = plt.subplots(figsize=(7.5, 6.5))
        im = ax.imshow(z, cmap="viridis", vmin=0, vmax=max(0.5, float(np.nanmax(z)) if np.isfinite(z).any() else 1))
        for (i, j), v in np.ndenumerate(z):
            if np.isfinite(v):
                ax.text(j, i - 0.12, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < np.nanmean(z) else "black")
                if np.isfinite(b[i, j]):
                    ax.text(j, i + 0.25, f"({b[i, j]:.2f})", ha="center", va="center", fontsize=5,
                            color="white" if v < np.nanmean(z) else "black")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xlabel("T (target class: generated images labelled T)")
        ax.set_ylabel("G (generated class, not held by the adversary)")
        ax.set_title(f"mean attack accuracy over training, defense={d}{', ' + label if label else ''}\n"
                     "(in brackets: no-attack G→T rate)", fontsize=9)
        fig.colorbar(im, ax=ax, label="share of G's test samples predicted T")
        fig.tight_layout()
        slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", label)
        path = out / (f"gan_attack_accuracy_{d}_{slug}.png" if label else f"gan_attack_accuracy_{d}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 21)
    for d, label in groups:
        vals = [r["attack_accuracy"] for r in rows
                if (r["defense"], r["setting"]) == (d, label) and r["attack_accuracy"] is not None]
        ax.hist(vals, bins=bins, alpha=0.5, label=f"{d}{', ' + label if label else ''} ({len(vals)} pairs)")
    base = [r["no_attack_rate"] for r in rows
            if r["no_attack_rate"] is not None and (r["defense"], r["setting"]) == groups[0]]
    if base:
        ax.hist(base, bins=bins, histtype="step", color="black", label="no attack (same pairs)")
    ax.set_xlabel("mean attack accuracy over training")
    ax.set_ylabel("(G, T) pairs")
    ax.set_title("GAN attack: distribution over (G, T) pairs (the blog's histogram)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "gan_histogram.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return files + [path]
