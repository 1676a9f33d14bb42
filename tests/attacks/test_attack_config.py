"""Attack keys checked at config time: bad values name the key, the value and what is allowed; class 0 is a class."""

from __future__ import annotations

import pytest
from fl_poison.config import ConfigError, resolve


# --- shared helpers ------------------------------------------------------------------------------
def _refusal(**over) -> ConfigError:
    """The ConfigError a digits run with these keys raises (before any data loads)."""
    with pytest.raises(ConfigError) as e:
        resolve({"dataset": "digits", **over})
    return e.value


# --- config checks: key, value and the allowed values --------------------------------------------
@pytest.mark.parametrize("over,key,value,must_contain", [
    # ADA: the source class is required and named with the data set's class range
    ({"attack": "ada"}, "source-class", -1, ["attack=ada", "0..9"]),
    # ADA chooses the target itself: even class 0 is refused, and the message leads with the allowed -1
    ({"attack": "ada", "source-class": 2, "target-class": 0}, "target-class", 0,
     ["attack=ada", "ADA chooses the target"]),
    # backdoor: a target is required; the trigger hits every class, so even source class 0 is refused
    ({"attack": "backdoor"}, "target-class", -1, ["attack=backdoor", "0..9"]),
    ({"attack": "backdoor", "target-class": 1, "source-class": 0}, "source-class", 0,
     ["attack=backdoor", "every class"]),
    # train-and-scale: both classes, named with the attack and the class range
    ({"attack": "train-and-scale"}, "source-class", -1, ["attack=train-and-scale", "0..9"]),
    # a trigger that does not fit the 8x8 digits image: the key, its value and the range that fits
    ({"attack": "backdoor", "target-class": 1, "trigger-size": 9}, "trigger-size", 9, ["1..8"]),
    ({"attack": "backdoor", "target-class": 1, "trigger-size": 3, "trigger-row": 6}, "trigger-row", 6,
     ["0..5", "height 8"]),
])
def test_bad_attack_config_names_key_value_and_allowed(over, key, value, must_contain):
    e = _refusal(**over)
    assert (e.key, e.value) == (key, value)
    msg = str(e)
    assert f"'{key}'" in msg and repr(value) in msg
    for part in must_contain:
        assert part in e.allowed
    if value >= 0 and key.endswith("-class"):  # "-1 for attack=...": the one allowed value comes first
        assert e.allowed.startswith("-1 ")


def test_class_0_is_a_valid_ada_source_and_backdoor_target():
    """Class 0 is a class like any other (the checks are `< 0`, not `<= 0`)."""
    assert resolve({"dataset": "digits", "attack": "ada", "source-class": 0})["source-class"] == 0
    assert resolve({"dataset": "digits", "attack": "backdoor", "target-class": 0})["target-class"] == 0
