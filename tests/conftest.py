"""Shared test setup: one torch thread (2-core CI), quiet Flower, the shared MNIST path."""

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_LOG_LEVEL", "WARNING")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
logging.getLogger("flwr").setLevel(logging.WARNING)

# Test files live in one folder per layer (attacks/, defenses/, core/, app/, deploy/, sweeps/, repo/), with no
# __init__.py: their basenames are unique across folders, and every folder is on sys.path so a test may import
# a helper from another test file by its basename (``from test_report import fake_run``) wherever it lives.
TESTS = Path(__file__).resolve().parent
for _folder in sorted(p for p in TESTS.iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

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
