"""The forged-update math of clients/forge, each against numbers worked by hand (in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clients.forge import alie, fang, gaussian, ipm, mimic, min_max, min_sum, sign_flip

RNG = np.random.default_rng(0)
# columns: 0, 2, 4 (mean 2, sample std 2) and 1, 4, 7 (mean 4, sample std 3)
SPREAD = np.array([[0.0, 1.0], [2.0, 4.0], [4.0, 7.0]])


def test_alie_z_max_as_in_the_paper():
    # n = 5, m = 2: s = floor(3.5) - 2 = 1, z = Phi^-1(4/5) = 0.841621
    assert alie.z_max(5, 2) == pytest.approx(0.841621, abs=1e-6)
    # n = 20, m = 4: s = 11 - 4 = 7, z = Phi^-1(13/20) = 0.385320
    assert alie.z_max(20, 4) == pytest.approx(0.385320, abs=1e-6)
    # m >= floor(n/2 + 1) would give s <= 0: clamped to s = 1 -> Phi^-1(9/10) = 1.281552
    assert alie.z_max(10, 7) == pytest.approx(1.281552, abs=1e-6)


def test_alie_is_mean_minus_z_std():
    # z = 1.5: (2 - 1.5 * 2, 4 - 1.5 * 3) = (-1, -0.5), the same for both attackers
    out = alie.forge(SPREAD, 2, RNG, z=1.5)
    np.testing.assert_allclose(out, [[-1.0, -0.5], [-1.0, -0.5]])
    report: dict = {}
    out = alie.forge(SPREAD, 1, RNG, num_clients=5, report=report)  # z_max(5, 1): s = 2, Phi^-1(0.6) = 0.253347
    assert report["alie-z"] == pytest.approx(0.253347, abs=1e-6)
    np.testing.assert_allclose(out, [[2 - 0.253347 * 2, 4 - 0.253347 * 3]], atol=1e-5)
    with pytest.raises(ValueError):
        alie.forge(SPREAD[:1], 1, RNG, z=1.0)  # a spread needs two updates


def test_ipm_is_minus_epsilon_times_the_mean():
    known = np.array([[1.0, -2.0], [3.0, 4.0]])  # mean (2, 1)
    np.testing.assert_allclose(ipm.forge(known, 2, RNG, epsilon=0.5), [[-1, -0.5], [-1, -0.5]])
    np.testing.assert_allclose(ipm.forge(known, 1, RNG, epsilon=10), [[-20, -10]])


def test_sign_flip_and_gaussian():
    np.testing.assert_array_equal(sign_flip.forge(np.array([[1.0, -2.0]]), 1, RNG), [[-1.0, 2.0]])
    np.testing.assert_array_equal(gaussian.forge(np.zeros((1, 3)), 2, RNG, std=0.0), np.zeros((2, 3)))
    big = gaussian.forge(np.ones((1, 20000)), 1, np.random.default_rng(1), std=2.0)
    assert abs(big.mean()) < 0.05 and big.std() == pytest.approx(2.0, rel=0.03)  # N(0, 4), not honest + noise
    with pytest.raises(ValueError):
        gaussian.forge(np.zeros((1, 3)), 1, RNG, std=-1.0)


def test_mimic_copies_the_update_furthest_along_the_top_variance_direction():
    # 1-D spread (x = 0, 1, 3; mean 4/3): centred -4/3, -1/3, 5/3 -> the third is furthest
    known = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    report: dict = {}
    np.testing.assert_array_equal(mimic.forge(known, 2, RNG, report=report), [[3, 0], [3, 0]])
    assert report["mimic-index"] == 2
    np.testing.assert_array_equal(mimic.forge(known, 1, RNG, target=0), [[0, 0]])


# ---------------------------------------------------------------- Min-Max / Min-Sum

LINE = np.array([[0.0], [0.0], [0.0], [6.0]])  # mean 1.5; unit-vector perturbation p = -1


def test_min_max_by_hand():
    # m = 1.5 - g; largest distance 4.5 + g <= diameter 6 -> g* = 1.5, m = 0
    report: dict = {}
    out = min_max.forge(LINE, 2, RNG, perturbation_kind="unit-vector", report=report)
    assert report["gamma"] == pytest.approx(1.5, abs=1e-4)
    np.testing.assert_allclose(out, [[0.0], [0.0]], atol=1e-4)


def test_min_sum_by_hand():
    # 3 (1.5 - g)^2 + (4.5 + g)^2 = 27 + 4 g^2 <= max_i sum_j (b_i - b_j)^2 = 3 * 36 = 108 -> g* = 4.5, m = -3
    report: dict = {}
    out = min_sum.forge(LINE, 1, RNG, perturbation_kind="unit-vector", report=report)
    assert report["gamma"] == pytest.approx(4.5, abs=1e-4)
    np.testing.assert_allclose(out, [[-3.0]], atol=1e-4)


def test_perturbations_by_hand():
    np.testing.assert_allclose(min_max.perturbation(SPREAD, "std"), [-2, -3])
    np.testing.assert_allclose(min_max.perturbation(SPREAD, "sign"), [-1, -1])
    np.testing.assert_allclose(min_max.perturbation(SPREAD, "unit-vector"), [-2 / math.sqrt(20), -4 / math.sqrt(20)])
    with pytest.raises(ValueError):
        min_max.perturbation(SPREAD, "bogus")


def _largest_by_scan(known: np.ndarray, p: np.ndarray, which: str) -> float:
    """The largest feasible gamma on a grid of step 1e-4 over [0, 20] (closed form of the distances in gamma)."""
    mean = known.mean(axis=0)
    gammas = np.arange(0, 20, 1e-4)
    diff = mean - known  # m - b_i = diff_i + g p
    sq = (diff ** 2).sum(1)[None, :] + 2 * gammas[:, None] * (diff @ p)[None, :] + gammas[:, None] ** 2 * (p @ p)
    pair = ((known[:, None] - known[None]) ** 2).sum(-1)
    ok = sq.max(1) <= pair.max() if which == "max" else sq.sum(1) <= pair.sum(1).max()
    return float(gammas[ok].max())


@pytest.mark.parametrize("kind", min_max.PERTURBATIONS)
def test_gamma_search_finds_the_largest_feasible_gamma(kind):
    rng = np.random.default_rng(7)
    for trial in range(4):
        known = rng.normal(size=(6, 5)) + rng.normal(size=5)
        p = min_max.perturbation(known, kind)
        for which, fn in (("max", min_max.forge), ("sum", min_sum.forge)):
            report: dict = {}
            fn(known, 1, rng, perturbation_kind=kind, report=report)
            assert report["gamma"] == pytest.approx(_largest_by_scan(known, p, which), abs=2e-4), (trial, which)


def test_gamma_search_stops_at_twice_gamma_init():
    assert min_max.search_gamma(lambda g: True, gamma_init=1.0) == pytest.approx(2.0, abs=1e-4)
    assert min_max.search_gamma(lambda g: False) == 0.0


# ---------------------------------------------------------------- Fang et al.

def test_fang_direction_estimates():
    # column 0: -10, 1, 2 (mean -7/3, median 1); column 1: 1, -1, -2 (mean -2/3, median -1)
    known = np.array([[-10.0, 1.0], [1.0, -1.0], [2.0, -2.0]])
    np.testing.assert_array_equal(fang.direction(known, "trimmed-mean", "mean"), [-1, -1])
    np.testing.assert_array_equal(fang.direction(known, "trimmed-mean", median=True), [1, -1])
    # trim-beta 0.1 of 3 trims int(0.3) = 0 (the mean); 0.34 trims one each end (the median)
    np.testing.assert_array_equal(fang.direction(known, "trimmed-mean", trim_beta=0.1), [-1, -1])
    np.testing.assert_array_equal(fang.direction(known, "trimmed-mean", trim_beta=0.34), [1, -1])
    # Krum with f = 0 over 3 rows: row 1 (distances^2 122, 2) and row 2 (145, 2) tie-break lower: row 1
    np.testing.assert_array_equal(fang.direction(known, "krum"), [1, -1])


def test_fang_trimmed_mean_full_knowledge_intervals():
    # per column max / min: (3, 1), (-2, -4), (5, 2); s = (-1, -1, +1, 0), b = 2
    known = np.array([[1.0, -4.0, 2.0, 1.0], [3.0, -2.0, 5.0, 3.0]])
    s = np.array([-1, -1, 1, 0])
    out = fang.trimmed_mean_attack(known, 200, np.random.default_rng(3), s)
    assert out.shape == (200, 4)
    assert np.all((3 <= out[:, 0]) & (out[:, 0] <= 6))  # w_max = 3 > 0: [w_max, b w_max]
    assert np.all((-2 <= out[:, 1]) & (out[:, 1] <= -1))  # w_max = -2 <= 0: [w_max, w_max / b]
    assert np.all((1 <= out[:, 2]) & (out[:, 2] <= 2))  # s = +1, w_min = 2 > 0: [w_min / b, w_min]
    np.testing.assert_array_equal(out[:, 3], 2.0)  # s = 0: the known mean
    assert len(np.unique(out[:, 0])) == 200  # each attacker samples its own values
    # on models (global -5 in column 0): models -4, -2 -> w_max = -2 <= 0: [-2, -1], i.e. updates in [3, 4]
    model = fang.trimmed_mean_attack(known, 50, np.random.default_rng(3), s, offset=np.array([-5.0, 0, 0, 0]))
    assert np.all((3 <= model[:, 0]) & (model[:, 0] <= 4))


def test_fang_trimmed_mean_partial_knowledge_intervals():
    # 1, 3, 5: mu = 3, sample sigma = 2 -> s = -1: [9, 11]; s = +1: [-5, -3]
    known = np.array([[1.0, 1.0], [3.0, 3.0], [5.0, 5.0]])
    out = fang.trimmed_mean_attack(known, 100, np.random.default_rng(4), np.array([-1, 1]), partial=True)
    assert np.all((9 <= out[:, 0]) & (out[:, 0] <= 11)) and np.all((-5 <= out[:, 1]) & (out[:, 1] <= -3))


def test_fang_krum_lambda_bound_and_search():
    # known (0, 0), (3, 4); 5 clients, c = 1, d = 2: Gamma has min(5 - 1 - 2, 1) = 1 neighbour at distance 5:
    # 5 / ((5 - 2 - 1) sqrt 2) + max norm 5 / sqrt 2 = 1.767767 + 3.535534 = 5.303301
    known = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert fang.lambda_bound(known, 5, 1) == pytest.approx(5.303301, abs=1e-6)
    rng = np.random.default_rng(5)
    known = rng.normal(size=(8, 50)) + 0.05  # wide spread: a copy near the centre wins Krum
    report: dict = {}
    out = fang.forge(known, 2, rng, variant="krum", num_clients=10, how="mean", report=report)
    lam, s = report["fang-lambda"], np.sign(known.mean(0))
    np.testing.assert_allclose(out, [-lam * s, -lam * s])
    k = math.log2(fang.lambda_bound(known, 10, 2) / lam)
    assert report["fang-krum-chosen"] == 1.0 and abs(k - round(k)) < 1e-9  # the bound halved k times
    from strategies.rules.robust import krum_scores

    assert int(np.argmin(krum_scores(np.vstack([out, known]), 2))) < 2
    # benign updates tight around a common mean: no lambda makes Krum pick the copies; lambda ends below 1e-5
    tight = rng.normal(size=(8, 6)) * 0.1 + 1.0
    report = {}
    fang.krum_attack(tight, 2, np.sign(tight.mean(0)), num_clients=10, report=report)
    assert report["fang-krum-chosen"] == 0.0 and report["fang-lambda"] < 1e-5


def test_fang_krum_with_few_known_updates_lowers_the_krum_budget():
    # own knowledge, 2 attackers: 2 known + 2 copies = 4 rows, f = min(2, 4 - 3) = 1 (f = 2 would leave no neighbour)
    assert fang.krum_budget(4, 2) == 1 and fang.krum_budget(2, 2) == 0 and fang.krum_budget(20, 4) == 4
    out = fang.forge(np.array([[1.0, 2.0], [2.0, 1.0]]), 2, RNG, variant="krum", num_clients=10)
    assert out.shape == (2, 2) and np.all(np.isfinite(out))


def test_fang_refuses_an_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        fang.forge(SPREAD, 1, RNG, variant="bulyan")


def test_fang_forge_on_trimmed_mean_is_the_sampled_attack_in_the_chosen_space():
    # direction from the known updates' trimmed mean (beta 0.1 of 3 trims nothing: the mean, signs (+1, +1));
    # space "model" shifts by the global model before sampling and back; "update" ignores the offset
    known = np.array([[1.0, -3.0], [2.0, 5.0], [4.0, 1.0]])
    offset = np.array([-10.0, 0.0])
    s = fang.direction(known, "trimmed-mean")
    np.testing.assert_array_equal(s, [1, 1])
    for space, shift in (("model", offset), ("update", None)):
        want = fang.trimmed_mean_attack(known, 3, np.random.default_rng(8), s, offset=shift)
        got = fang.forge(known, 3, np.random.default_rng(8), variant="trimmed-mean", space=space, offset=offset)
        np.testing.assert_array_equal(got, want)
    # model space, s = +1: models -9, -8, -6 -> w_min = -9 <= 0: [b w_min, w_min] = [-18, -9], updates [-8, 1]
    model = fang.forge(known, 50, np.random.default_rng(8), variant="trimmed-mean", offset=offset)
    assert model.shape == (50, 2) and np.all((-8 <= model[:, 0]) & (model[:, 0] <= 1))
    # every option reaches the sampler: b, partial knowledge, the median's and a trimmed mean's direction
    rng = lambda: np.random.default_rng(9)  # noqa: E731
    s_med = fang.direction(known, "trimmed-mean", median=True)
    np.testing.assert_array_equal(
        fang.forge(known, 2, rng(), variant="trimmed-mean", space="update", b=3.0, median=True),
        fang.trimmed_mean_attack(known, 2, rng(), s_med, b=3.0))
    np.testing.assert_array_equal(
        fang.forge(known, 2, rng(), variant="trimmed-mean", space="update", partial=True),
        fang.trimmed_mean_attack(known, 2, rng(), s, partial=True))
    s_tm = fang.direction(known, "trimmed-mean", trim_beta=0.34)  # trims one each end: the median (2, 1)
    np.testing.assert_array_equal(
        fang.forge(known, 2, rng(), variant="trimmed-mean", space="update", trim_beta=0.34),
        fang.trimmed_mean_attack(known, 2, rng(), s_tm))
    np.testing.assert_array_equal(fang.forge(known, 2, rng(), variant="trimmed-mean", space="update", how="mean"),
                                  fang.trimmed_mean_attack(known, 2, rng(), np.sign(known.mean(0))))


def test_fang_defaults_are_the_papers():
    # b = 2, full knowledge, model space, trimmed-mean direction at beta 0.1 (not the median), Krum with f = c
    known = np.array([[-1.0, 2.0, 0.5], [3.0, -2.0, 0.4], [2.0, 1.0, -3.0], [0.0, 1.0, 1.0]])
    offset = np.array([0.5, -1.0, 2.0])
    s = fang.direction(known, "trimmed-mean", trim_beta=0.1, median=False)
    np.testing.assert_array_equal(
        fang.forge(known, 2, np.random.default_rng(1), variant="trimmed-mean", offset=offset),
        fang.trimmed_mean_attack(known, 2, np.random.default_rng(1), s, b=2.0, partial=False, offset=offset))
    # Krum direction: f defaults to 0 attackers; with 4 x 3 known rows the budget counts rows (K - 3 = 1), not columns
    np.testing.assert_array_equal(fang.direction(known, "krum"), fang.direction(known, "krum", num_malicious=0))
    wide = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0], [1.2, 1.0, 1.0, 1.0, 1.0],
                     [-9.0, 9.0, -9.0, 9.0, -9.0]])
    # f = min(1, 4 - 3) = 1: scores = the nearest 4 - 1 - 2 = 1 neighbour: rows 1 and 2 (0.04) -> row 1
    np.testing.assert_array_equal(fang.direction(wide, "krum", num_malicious=1), [1, 1, 1, 1, 1])
    # without num_clients the Krum attack counts the known rows plus the attackers (10 + 2 = 12)
    rng = np.random.default_rng(6)
    many = rng.normal(size=(10, 20)) + 0.05
    a, b = {}, {}
    fang.forge(many, 2, rng, variant="krum", report=a)
    fang.forge(many, 2, rng, variant="krum", num_clients=12, report=b)
    assert a == b
    c = {}
    fang.forge(many, 2, rng, variant="krum", num_clients=30, report=c)
    assert c["fang-lambda"] != a["fang-lambda"]  # the bound depends on the number of clients


def test_fang_bad_options_name_the_allowed_values():
    with pytest.raises(ValueError, match=r"^variant must be one of trimmed-mean, krum, got 'bulyan'$"):
        fang.forge(SPREAD, 1, RNG, variant="bulyan")
    with pytest.raises(ValueError, match=r"^space must be one of model, update, got 'weights'$"):
        fang.forge(SPREAD, 1, RNG, variant="trimmed-mean", space="weights")
    with pytest.raises(ValueError, match=r"^direction must be one of aggregate, mean, got 'up'$"):
        fang.direction(SPREAD, "trimmed-mean", "up")
    with pytest.raises(ValueError, match="2"):  # two known updates at least: one gives no interval
        fang.forge(SPREAD[:1], 1, RNG, variant="trimmed-mean")
