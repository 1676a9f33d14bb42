"""Model-poisoning attacks at the unit level: ADA, backdoor + trigger, scale, train-and-scale, the update math.

Pins what the mutation run found unchecked by the fast tests:
the boundaries and messages of each attack's config check (a bad config
names the key, its value and the allowed values), the trigger geometry at
its edges, the poisoned-index draw at its edges, and each attack's round
(``target_for`` / ``training_set`` / ``craft`` / ``local_work``) run directly
on a tiny model, with no federation.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from clients.attacks.ada import ADA
from clients.attacks.backdoor import Backdoor, trigger_args
from clients.attacks.scale import Scale
from clients.attacks.train_and_scale import TrainAndScale
from clients.behaviour import RoundInput
from clients.model_poisoning import scale_update, shrink_factor, shrink_to_bound, update_norm
from clients.store import NodeStore
from clients.target_choice import choose_target
from clients.trigger import backdoor_set, poison_indices, stamp, trigger_position
from fl_poison.config import ConfigError, resolve
from fl_poison.data.datasets import get_spec
from fl_poison.training import TrainSettings, get_state, train_local


# --- shared helpers ------------------------------------------------------------------------------
def _refusal(**over) -> ConfigError:
    """The ConfigError a digits run with these keys raises (before any data loads)."""
    with pytest.raises(ConfigError) as e:
        resolve({"dataset": "digits", **over})
    return e.value


def _round(cfg, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, cid: int = 0, server_round: int = 1,
           seed: int = 1, num_classes: int = 10, global_state: dict | None = None) -> RoundInput:
    """One client's round the way the ClientApp builds it (a seeded generator from ``seed``)."""
    return RoundInput(cid=cid, server_round=server_round, config=cfg, model=model,
                      global_state=global_state if global_state is not None else get_state(model), x=x, y=y,
                      settings=TrainSettings.from_config(cfg), num_classes=num_classes, seed=seed,
                      rng=np.random.default_rng(seed), store=NodeStore())


def _arrays(seed: int) -> dict[str, np.ndarray]:
    """A small float32 state with an integer buffer (BatchNorm's counter), random but seeded."""
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(20, 30)).astype(np.float32), "b": rng.normal(size=30).astype(np.float32),
            "n": np.array(seed, np.int64)}


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


# --- trigger geometry and stamping ---------------------------------------------------------------
@pytest.mark.parametrize("size,row,col,corner", [
    (1, -1, -1, (7, 7)),  # the smallest trigger: one pixel in the bottom-right corner
    (8, -1, -1, (0, 0)),  # the largest: the whole image
    (3, 0, 0, (0, 0)),  # explicitly at the top-left edge
    (3, 5, 0, (5, 0)), (3, 0, 5, (0, 5)),  # against the bottom / right edge by index
])
def test_trigger_fits_at_every_edge(size, row, col, corner):
    assert trigger_position((1, 8, 8), size, row, col) == corner


@pytest.mark.parametrize("row,col,key,valid", [(26, 0, "trigger-row", "0..25"), (0, 27, "trigger-col", "0..25")])
def test_misplaced_trigger_message_gives_the_valid_range(row, col, key, valid):
    with pytest.raises(ValueError) as e:
        trigger_position((1, 28, 28), 3, row, col)
    msg = str(e.value)
    assert msg.startswith(key) and f"({valid}, or -1)" in msg


def test_stamp_writes_the_exact_value_in_the_images_precision():
    """A float64 image gets exactly 0.1, not 0.1 rounded through float32 first."""
    out = stamp(torch.zeros(2, 1, 4, 4, dtype=torch.float64), 2, -1, -1, 0.1)
    assert out.dtype == torch.float64
    assert (out[:, :, 2:, 2:] == 0.1).all() and out[:, :, :2].abs().sum() == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_backdoor_set_takes_indices_of_any_integer_dtype(dtype):
    """Compact index arrays select samples (uint8 is not a mask, int16 is not refused)."""
    x, y = torch.zeros(5, 1, 3, 3), torch.arange(5)
    x2, y2 = backdoor_set(x, y, np.array([1, 3], dtype=dtype), 9, 1, 0, 0, torch.tensor([2.0]))
    assert y2.tolist() == [0, 9, 2, 9, 4]
    assert x2[:, 0, 0, 0].tolist() == [0, 2, 0, 2, 0] and float(x2.sum()) == 4.0


# --- the poisoned share --------------------------------------------------------------------------
@pytest.mark.parametrize("n,fraction,expected_len", [(10, 0.01, 1), (1, 0.5, 1), (1, 0.1, 1), (10, 0.25, 2)])
def test_poison_indices_count(n, fraction, expected_len):
    """round(fraction * n) samples, but at least one as soon as there is a sample (Python's round: 2.5 -> 2)."""
    assert len(poison_indices(n, fraction, np.random.default_rng(0))) == expected_len


def test_poison_indices_of_an_empty_set_is_an_empty_integer_index():
    idx = poison_indices(0, 0.5, np.random.default_rng(0))
    assert idx.shape == (0,) and idx.dtype.kind == "i"
    assert np.arange(0)[idx].shape == (0,)  # usable as an index (a float array is not)


def test_poison_indices_draws_without_replacement():
    """fraction 1 poisons every sample exactly once."""
    for seed in range(5):
        assert np.array_equal(poison_indices(20, 1.0, np.random.default_rng(seed)), np.arange(20))


# --- backdoor attack: the config it reads, the poisoned set, boosting ----------------------------
BACKDOOR = {"dataset": "digits", "attack": "backdoor", "target-class": 7, "poison-fraction": 0.5, "seed": 5,
            "trigger-size": 2, "trigger-row": 1, "trigger-col": 3, "trigger-value": 1.0}


def test_trigger_args_reads_the_trigger_keys_and_normalises_the_value():
    """MNIST normalises a raw pixel v to (v - 0.1307) / 0.3081."""
    cfg = resolve({"dataset": "mnist", "data-dir": "/nonexistent", "attack": "backdoor", "target-class": 1,
                   "trigger-size": 2, "trigger-row": 1, "trigger-col": 3, "trigger-value": 0.5})
    size, row, col, value = trigger_args(cfg)
    assert (size, row, col) == (2, 1, 3)
    assert value.tolist() == pytest.approx([(0.5 - 0.1307) / 0.3081])


def _backdoor_round(cfg, *, cid: int = 0, server_round: int = 1) -> RoundInput:
    x, y = torch.zeros(40, 1, 8, 8), torch.arange(40) % 7  # labels 0..6: a 7 marks a poisoned sample
    return _round(cfg, nn.Linear(1, 1), x, y, cid=cid, server_round=server_round)


def test_backdoor_training_set_poisons_the_configured_share():
    cfg = resolve(BACKDOOR)
    r = _backdoor_round(cfg)
    x2, y2 = Backdoor(0, cfg).training_set(r)
    hit = (y2 == 7).numpy()
    assert hit.sum() == 20  # poison-fraction 0.5 of 40
    assert torch.equal(y2[~hit], r.y[~hit]) and x2[~hit].abs().sum() == 0
    white = float(get_spec("digits").pixel_value(1.0)[0])  # trigger-value 1.0 = a white digits pixel
    assert (x2[hit][:, :, 1:3, 3:5] == white).all()
    outside = x2[hit].clone()
    outside[:, :, 1:3, 3:5] = 0
    assert outside.abs().sum() == 0
    # the same (seed, round, client) poisons the same samples; another client others
    assert torch.equal(Backdoor(0, cfg).training_set(_backdoor_round(cfg))[1], y2)
    other = Backdoor(1, cfg).training_set(_backdoor_round(cfg, cid=1))[1]
    assert not torch.equal(other, y2)


def test_backdoor_boost_scales_the_update_and_1_sends_the_trained_weights_untouched():
    g, s = _arrays(0), _arrays(1)
    r = _round(resolve(BACKDOOR), nn.Linear(1, 1), torch.zeros(1, 1), torch.zeros(1), global_state=g)
    off = Backdoor(0, resolve(BACKDOOR)).craft(r, s)
    for k in s:  # bit for bit: g + 1 * (s - g) would round some float32 entries
        assert np.array_equal(off[k], s[k])
    boosted = Backdoor(0, resolve({**BACKDOOR, "backdoor-boost": 3.0})).craft(r, s)
    for k in ("w", "b"):
        np.testing.assert_allclose(boosted[k], g[k] + 3 * (s[k] - g[k]), rtol=1e-5, atol=1e-5)
    assert boosted["n"] == s["n"]


# --- scale attack --------------------------------------------------------------------------------
def test_scale_noise_comes_from_the_rounds_generator():
    """scale-noise adds N(0, std^2) drawn from r.rng: reproducible for the round's seed, of the configured std."""
    cfg = resolve({"dataset": "digits", "attack": "scale", "scale-factor": 2.0, "scale-noise": 0.5})
    g, s = _arrays(0), _arrays(1)

    def crafted(seed):
        r = _round(cfg, nn.Linear(1, 1), torch.zeros(1, 1), torch.zeros(1), seed=seed, global_state=g)
        return Scale(0, cfg).craft(r, s)

    a, b = crafted(3), crafted(3)
    assert all(np.array_equal(a[k], b[k]) for k in s)
    noise = a["w"] - (g["w"] + 2 * (s["w"] - g["w"]))
    assert noise.std() == pytest.approx(0.5, rel=0.1) and abs(noise.mean()) < 0.1
    assert not np.array_equal(crafted(4)["w"], a["w"])


# --- ADA: the target it picks from the received model ---------------------------------------------
class _Head(nn.Module):
    """penultimate features = the 2-D input; a seeded random linear output layer over 4 classes."""

    output_layer = "fc"

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(2, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(4, 2, generator=gen))
            self.fc.bias.copy_(torch.randn(4, generator=gen))

    def penultimate(self, x):
        return torch.flatten(x, 1)

    def forward(self, x):
        return self.fc(self.penultimate(x))


def _clusters() -> tuple[torch.Tensor, torch.Tensor]:
    """10 points per class around (0,0), (1,0), (5,0), (0,-3): class 1's mean is nearest to class 0's."""
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, -3.0]])
    y = torch.arange(4).repeat_interleave(10)
    return centres[y] + 0.05 * torch.randn(40, 2, generator=torch.Generator().manual_seed(0)), y


@pytest.mark.parametrize("knowledge,rule", [("full", "paper"), ("partial", "paper"), ("partial", "code")])
def test_ada_target_follows_the_configured_knowledge_and_flame_rule(knowledge, rule):
    """Head(17) makes the three choices disagree (full -> 1, FLAME paper -> 2, FLAME code -> 3)."""
    x, y = _clusters()
    cfg = resolve({"dataset": "digits", "attack": "ada", "source-class": 0, "ada-knowledge": knowledge,
                   "ada-flame-rule": rule})
    r = _round(cfg, _Head(17), x, y, num_classes=4)
    target, extra = ADA(0, cfg).target_for(r, x, y)
    want = {("full", "paper"): 1, ("partial", "paper"): 2, ("partial", "code"): 3}[(knowledge, rule)]
    assert target == want == choose_target(_Head(17), x, y, 0, 4, knowledge, rule)[0]
    assert extra == {"ada-target": float(want)}


# --- update arithmetic ---------------------------------------------------------------------------
def test_scale_update_noise_is_n_0_std_per_float_entry_from_the_given_generator():
    """Same draws as numpy's own N(0, std) in state order; integer buffers anywhere in the dict pass through."""
    g, s = _arrays(0), _arrays(1)
    g, s = {"n": g.pop("n"), **g}, {"n": s.pop("n"), **s}  # the buffer first, as BatchNorm's may be
    out = scale_update(s, g, -1.5, noise_std=0.3, rng=np.random.default_rng(7))
    draws = np.random.default_rng(7)
    assert list(out) == ["n", "w", "b"] and out["n"] == s["n"]
    for k in ("w", "b"):
        want = g[k] + (-1.5) * (s[k] - g[k]) + draws.normal(0.0, 0.3, size=s[k].shape)
        assert out[k].dtype == np.float32
        np.testing.assert_allclose(out[k], want, rtol=1e-5, atol=1e-5)


def test_scale_update_refuses_noise_without_a_generator():
    with pytest.raises(ValueError, match="^noise needs a generator$"):
        scale_update(_arrays(1), _arrays(0), 2.0, noise_std=0.5)


@pytest.mark.parametrize("bound,step,message", [
    (0.0, 0.1, "bound must be > 0"),
    (5.0, 0.0, r"step must be in \(0, 1\]"),  # norm 4 already fits: only the check can refuse
    (5.0, 2.0, r"step must be in \(0, 1\]"),
])
def test_shrink_factor_refuses_a_bad_bound_or_step(bound, step, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        shrink_factor(4.0, bound, step)


def test_shrink_factor_step_1_is_all_or_nothing():
    assert shrink_factor(4.0, 5.0, 1.0) == 1.0 and shrink_factor(10.0, 5.0, 1.0) == 0.0


def test_shrink_to_bound_sends_an_update_that_fits_untouched():
    """Factor 1: the trained weights bit for bit (g + 1 * (s - g) would round some float32 entries)."""
    g, s = _arrays(0), _arrays(1)
    new, factor, norm = shrink_to_bound(s, g, 1e6)
    assert factor == 1.0 and norm == pytest.approx(update_norm(s, g))
    assert all(np.array_equal(new[k], s[k]) for k in s)


# --- train-and-scale / ADA: one round on a tiny model --------------------------------------------
TS = {"dataset": "digits", "attack": "train-and-scale", "source-class": 3, "target-class": 0, "seed": 2,
      "batch-size": 16, "lr": 0.02}


def _digit_round(cfg, **kw) -> RoundInput:
    """60 random 8x8 'digits' of classes 0..5 and a seeded linear model over 10 classes."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 8, 8, generator=gen), torch.arange(60) % 6
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return _round(cfg, model, x, y, **kw)


def _trained(r: RoundInput, y: torch.Tensor, augment=None) -> dict[str, np.ndarray]:
    """The state of a fresh copy of the received model trained on (r.x, y) with the round's seed."""
    model = copy.deepcopy(r.model)
    train_local(model, r.x, y, r.settings, seed=r.seed, augment=augment)
    return get_state(model)


def test_auto_bound_is_the_norm_of_an_honest_update_and_leaves_the_received_model_alone():
    cfg = resolve(TS)
    flip = lambda xb, gen: torch.flip(xb, dims=[3])  # noqa: E731 -- an augmentation that changes the update
    for augment in (None, flip):
        r = _digit_round(cfg)
        r.augment = augment
        want = update_norm(_trained(r, r.y, augment), r.global_state)
        assert 0 < want < 1
        assert TrainAndScale(0, cfg).bound_for(r) == pytest.approx(want, rel=1e-6)
        assert all(np.array_equal(v, r.global_state[k]) for k, v in get_state(r.model).items())
    assert TrainAndScale(0, resolve({**TS, "scale-bound": "0.25"})).bound_for(r) == 0.25
    assert TrainAndScale(0, cfg).local_work(r).metrics["scale-bound"] == pytest.approx(want, rel=1e-6)


def test_train_and_scale_round_flips_onto_class_0_and_shrinks_into_the_bound():
    """Source 3 -> target 0 on all local data, then g + f * (raw - g) with the first f of 1, 0.9, ... that fits."""
    cfg = resolve({**TS, "scale-bound": "0.2"})
    r = _digit_round(cfg)
    flipped = r.y.clone()
    flipped[r.y == 3] = 0
    raw = _trained(r, flipped)
    res = TrainAndScale(0, cfg).local_work(r)
    m = res.metrics
    assert m["scale-bound"] == 0.2 and m["unscaled-norm"] == pytest.approx(update_norm(raw, r.global_state), rel=1e-5)
    f = m["shrink-factor"]
    assert 0 < f < 1 and f * m["unscaled-norm"] <= 0.2 < (f + 0.1) * m["unscaled-norm"]
    want = scale_update(raw, r.global_state, f)
    assert all(np.allclose(res.state[k], want[k], atol=1e-6) for k in want)
    assert res.num_examples == 60


def test_train_and_scale_outside_the_attack_window_trains_honestly():
    cfg = resolve({**TS, "attack-start-round": 2, "scale-bound": "0.2"})
    r = _digit_round(cfg, server_round=1)
    honest = _trained(r, r.y)
    res = TrainAndScale(0, cfg).local_work(r)
    assert "shrink-factor" not in res.metrics
    assert all(np.allclose(res.state[k], honest[k]) for k in honest)


def test_ada_without_source_samples_trains_honestly_and_reports_no_target():
    """No sample of the source class: no attacking distance, target -1, the honest update, ada-target -1."""
    x, y = _clusters()
    keep = y != 0
    cfg = resolve({"dataset": "digits", "attack": "ada", "source-class": 0, "scale-bound": "0.01", "seed": 2})
    r = _round(cfg, _Head(17), x[keep], y[keep], num_classes=4)
    want = _trained(r, r.y)
    res = ADA(0, cfg).local_work(r)
    assert res.metrics["ada-target"] == -1.0 and "shrink-factor" not in res.metrics
    assert all(np.allclose(res.state[k], want[k]) for k in want)
