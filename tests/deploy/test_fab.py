"""The FAB that ``flwr run .`` and a deployment build from this checkout: the app's code, within Flower's limit."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

build = pytest.importorskip("flwr.cli.build")
from flwr.common.constant import FAB_MAX_SIZE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


# mutmut's copy of the source holds every mutant of every function (several times our code): its FAB measures
# mutmut, not this checkout, and is over the limit by construction
@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="mutmut's mutated copy of the source")
def test_the_fab_holds_the_apps_code_and_no_stored_run_and_fits_flowers_limit():
    fab = build.build_fab_from_disk(ROOT)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert len(fab) < FAB_MAX_SIZE
    # the components pyproject.toml names, and what they import
    for module in ("fl_poison/app/server_app.py", "fl_poison/app/client_app.py", "strategies/base.py",
                   "clients/attacks/forged.py"):
        assert module in names
    assert not [n for n in names if n.startswith(("reproductions/", "tests/", "docs/", "results/"))]
