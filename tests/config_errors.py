"""Shared assertion for bad run configs: refused by ``resolve`` naming the key, and by the CLI with exit 2."""

from __future__ import annotations

from typing import Any

import pytest

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve


def assert_refused(config: dict[str, Any], key: str, capsys: pytest.CaptureFixture) -> None:
    """``resolve(config)`` raises for ``key``; ``fl-poison run --set ...`` exits 2 with a line naming it."""
    with pytest.raises(ConfigError) as e:
        resolve(config)
    assert e.value.key == key
    args = ["run"] + [a for k, v in config.items() for a in ("--set", f"{k}={v}")]
    assert main(args) == 2 and f"'{key}'" in capsys.readouterr().err


def config_error(**over: Any) -> ConfigError:
    """The ConfigError ``resolve`` raises for these run keys (fails the test if there is none)."""
    with pytest.raises(ConfigError) as e:
        resolve(over)
    return e.value
