"""Everything the server reads from a train reply is checked: an odd reply is invalid, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from flower_replies import array_record, make_reply
from strategies import defenses as D

GLOBAL = [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]


@pytest.mark.parametrize("key", ["train-loss", "train-accuracy", "received-model-accuracy"])
def test_a_reply_whose_standard_metric_is_a_list_is_invalid_not_a_crash(server_identity, key):
    s = D.FedAvgDefense()
    s._global = array_record(GLOBAL)
    ones = [np.ones_like(a) for a in GLOBAL]
    good = make_reply(ones, 10, 1, {key: 1.0})
    odd = make_reply(ones, 10, 2, {key: [1.0, 2.0]})
    arrays, metrics = s.aggregate_train(1, [good, odd])
    assert s.last_report.clients == [1] and s.last_report.invalid[2] == f"'{key}' is [1.0, 2.0], must be a number"
    assert metrics["num-invalid"] == 1
    np.testing.assert_array_equal(arrays["0"].numpy(), ones[0])
