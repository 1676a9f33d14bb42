"""The GAN attack's server-side measurements: its generated previews, recognised by the global model.

The adversary's reply carries a measurement-only ``gan-preview`` record
(images from a fixed latent batch; the defense never reads it). Each trained
round the *new* global model scores the latest previews: ``gan_recognised`` =
share classified as G; the previews of a few rounds become ``gan_samples.png``
and the run's summary gains a ``gan`` section.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fl_poison.config import Config
from fl_poison.measurement import Measurement, Outputs

log = logging.getLogger("fl_poison.experiment")

#: What :class:`GanMeasurement` writes (declared on the attack class).
GAN_OUTPUTS = Outputs(series=("gan_recognised",),
                      sections=(("gan", ("recognised_mean", "recognised_final")),))


class GanMeasurement(Measurement):
    """Recognition of the generator's previews by each round's global model, and the previews themselves."""

    def __init__(self, cfg: Config, fed: Any) -> None:
        self.cfg, self.fed = cfg, fed
        self.latest: np.ndarray | None = None
        self.snapshots: dict[int, np.ndarray] = {}
        self.recognised: list[float] = []
        self.invalid_previews = 0  # malformed gan-preview records ignored

    def round_metrics(self, server_round: int, model: Any, replies: Sequence[Any]) -> dict[str, Any]:
        import torch

        from clients.attacks.gan import read_preview
        from clients.gan import recognition_rate

        for reply in replies:
            if reply.has_error() or "gan-preview" not in reply.content.config_records:
                continue
            try:  # a client's record: a malformed one is that reply's problem, never the server's
                images, made = read_preview(reply.content.config_records["gan-preview"],
                                            tuple(self.fed.dataset.spec.input_shape), server_round)
            except (ValueError, TypeError, KeyError) as exc:
                self.invalid_previews += 1
                log.warning("round %d: ignoring the gan-preview of node %d: %s", server_round,
                            reply.metadata.src_node_id, exc)
                continue
            self.latest = images
            self.snapshots[made] = images
            break  # one adversary's generator (the first reply that carries one) is enough to look at
        if self.latest is None:
            return {"gan_recognised": None}
        rate = recognition_rate(model, torch.from_numpy(self.latest), self.cfg["source-class"])
        self.recognised.append(rate)
        return {"gan_recognised": rate}

    def summary_entries(self) -> dict[str, Any]:
        vals = [v for v in self.recognised if v is not None and math.isfinite(v)]
        return {"gan": {"recognised_mean": float(np.mean(vals)) if vals else None,
                        "recognised_final": vals[-1] if vals else None,
                        "preview_rounds": sorted(self.snapshots), "invalid_previews": self.invalid_previews}}

    def figures(self, run_dir: Path, bands: int = 6) -> list[Path]:
        """``gan_samples.png``: one row of generated images per round band (the last row: the final round)."""
        if not self.snapshots:
            return []
        from clients.gan import to_pixels
        from fl_poison.figures import sample_grid_figure

        rounds = sorted(self.snapshots)
        picks = sorted({rounds[int(round(i * (len(rounds) - 1) / max(bands - 1, 1)))] for i in range(bands)})
        spec = self.fed.dataset.spec
        rows = [(f"round {r}", to_pixels(self.snapshots[r][:16], spec.mean, spec.std)) for r in picks]
        title = (f"generator of class G={self.cfg['source-class']} (poisoned as T={self.cfg['target-class']}); "
                 f"fixed latents")
        return [sample_grid_figure(run_dir / "gan_samples.png", rows, title)]
