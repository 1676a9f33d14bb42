"""The ServerApp: validate the run config, then run the experiment on whatever Grid Flower gives."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fl_poison.app.experiment import run_experiment
from fl_poison.app.polling import fast_polling
from fl_poison.config import ConfigError, resolve

app = ServerApp()
log = logging.getLogger("fl_poison")


def _log_progress(row, cfg, elapsed) -> None:
    log.warning("round %d/%d  accuracy=%.4f  loss=%.4f  elapsed=%.1fs", row["round"], cfg["num-rounds"],
                row["accuracy"], row["loss"], elapsed)


@app.main()
def main(grid: Grid, context: Context) -> None:
    try:
        cfg = resolve(context.run_config)
        summary = run_experiment(fast_polling(grid), cfg, progress=_log_progress)
    except ConfigError as exc:  # one clear line, not a traceback
        log.error("fl-poison: error: %s", exc)
        return
    log.warning("fl-poison: run finished, accuracy=%.4f; results in %s", summary["accuracy"],
                cfg["out-dir"])
