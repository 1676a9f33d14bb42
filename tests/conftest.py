"""Shared test setup: one torch thread (2-core CI), quiet Flower, the shared MNIST path."""

import logging
import os
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_LOG_LEVEL", "WARNING")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
logging.getLogger("flwr").setLevel(logging.WARNING)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist" / "train-labels-idx1-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist not present")
    return SHARED_DATA


@pytest.fixture
def server_identity() -> None:
    """``Message()`` built by a strategy needs the identity a ServerApp process has (run id, SuperLink node)."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 0
