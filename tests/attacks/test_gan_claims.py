"""The GAN blog's claims as rules on the (G, T) pair rows: each rule on hand-worked rows, both verdicts."""

import math

import numpy as np
import pytest

from clients import gan_claims as gc


def _row(g, t, acc, std=0.0, n=3, defense="fedavg"):
    return {"defense": defense, "G": g, "T": t, "n": n, "attack_accuracy": acc, "attack_accuracy_std": std}


def test_the_range_claim_counts_pairs_inside_the_closed_interval():
    rows = [_row(0, k + 1, a) for k, a in enumerate([0.2, 0.5, 0.35, 0.3, 0.25, 0.45, 0.4, 0.33, 0.29, 0.51])]
    res = gc.in_range(rows)
    assert res.holds is True and res.measured.startswith("9 of 10 pairs (90%)")  # 0.2 and 0.5 are inside
    assert gc.in_range(rows[:-1] + [_row(0, 9, 0.19), _row(1, 0, 0.6)]).holds is False  # 8 of 11
    assert gc.in_range([]).holds is None


def test_one_outlier_per_ninety_pairs_is_allowed():
    rows = [_row(k // 9, k % 9, 0.3) for k in range(30)]
    assert gc.outliers(rows + [_row(9, 0, 0.7)]).holds is True
    res = gc.outliers(rows + [_row(9, 0, 0.7), _row(9, 1, 0.55)])
    assert res.holds is False and "2 above 0.5: 9→0 0.700, 9→1 0.550" in res.measured
    assert gc.outliers([_row(0, 1, 0.5)]).holds is True  # 0.5 itself is no outlier
    many = [_row(k // 10, k % 10, 0.9 if k < 2 else 0.3) for k in range(91)]
    assert gc.outliers(many).holds is True  # 91 pairs: two allowed


def test_asymmetry_compares_each_mirrored_couple_with_two_standard_errors_of_its_seeds():
    rows = [_row(3, 8, 0.30, 0.01), _row(8, 3, 0.40, 0.01),  # 0.10 apart, se = 0.0082: apart
            _row(1, 7, 0.30, 0.05), _row(7, 1, 0.31, 0.05),  # 0.01 apart, se = 0.041: not
            _row(2, 5, 0.3)]  # no mirror: not a couple
    couples = gc.mirrored_couples(rows)
    assert [(a["G"], a["T"], b["G"], b["T"]) for a, b in couples] == [(1, 7, 7, 1), (3, 8, 8, 3)]
    res = gc.asymmetry(rows)
    assert res.holds is True and res.measured.startswith("1 of 2 couples") and "0.055" in res.measured
    assert gc.asymmetry(rows, share=0.6).holds is False
    se = math.sqrt(0.05 ** 2 / 3 + 0.05 ** 2 / 3)
    edge = [_row(1, 2, 0.3, 0.05), _row(2, 1, 0.3 + 2 * se + 1e-6, 0.05)]
    assert gc.asymmetry(edge).holds is True
    assert gc.asymmetry([_row(1, 2, 0.3, 0.0, n=1), _row(2, 1, 0.5, 0.0, n=1)]).holds is None  # one seed: no se


def test_a_class_that_is_attacked_far_more_easily_fails_the_no_class_effect_claim():
    from scipy.stats import kruskal

    rng = np.random.default_rng(0)
    pairs = [(g, t) for g in range(10) for t in range(10) if g != t]
    even = [_row(g, t, float(rng.uniform(0.2, 0.5))) for g, t in pairs]
    res = gc.class_effect(even)
    by_g = [[r["attack_accuracy"] for r in even if r["G"] == g] for g in range(10)]
    assert f"G: p = {kruskal(*by_g).pvalue:.3f} (10 classes, 9–9 pairs each)" in res.measured
    assert res.holds is True
    skewed = [_row(g, t, 0.9 if g == 4 else r["attack_accuracy"]) for (g, t), r in zip(pairs, even)]
    assert gc.class_effect(skewed).holds is False
    assert gc.class_effect([_row(0, 1, 0.3), _row(1, 0, 0.4)]).holds is None  # one pair per class


def test_the_falling_share_counts_rounds_below_the_round_before():
    assert gc.falling_share([0.1, 0.2, 0.15, 0.3]) == pytest.approx(1 / 3)
    assert gc.falling_share([0.1, 0.2, 0.3, 0.3]) == 0.0  # steady (a flat step is no fall)
    assert gc.falling_share([0.4]) is None


def test_attack_rounds_start_where_the_gan_first_ran_and_fluctuation_takes_the_median_run(tmp_path):
    def run(name, asr, recognised):
        d = tmp_path / name
        d.mkdir()
        lines = ["round,accuracy,attack_success_rate,gan_recognised"]
        lines += [f"{i},0.9,{a},{'' if r is None else r}" for i, (a, r) in enumerate(zip(asr, recognised))]
        (d / "rounds.csv").write_text("\n".join(lines) + "\n")
        return {"dir": d, "config": {"attack": "gan"}}

    # a fall in round 1 happens before the GAN starts in round 2: not counted
    a = run("a", [0.0, 0.5, 0.1, 0.2, 0.3, 0.4], [None, None, 0.9, 0.9, 0.9, 0.9])
    assert gc.attack_rounds(a["dir"]) == [0.1, 0.2, 0.3, 0.4]
    b = run("b", [0.3, 0.1, 0.4, 0.2, 0.5], [0.9] * 5)  # 2 falls in 4 steps
    c = run("c", [0.3, 0.2, 0.1, 0.4, 0.3], [0.9] * 5)  # 3 in 4
    res = gc.fluctuation([a, b, c])
    assert res.measured.startswith("median 50% of rounds falling (3 runs; range 0%–75%)") and res.holds is True
    assert gc.fluctuation([a]).holds is False
    assert gc.fluctuation([{"dir": tmp_path, "config": {"attack": "none"}}]).holds is None


def test_the_claims_page_has_one_table_per_defense_with_the_count_that_holds():
    rows = [_row(0, 1, 0.3), _row(1, 0, 0.35)]
    lines = gc.claims_markdown("fedavg", gc.check_claims(rows, []))
    text = "\n".join(lines)
    assert lines[0] == "### defense = fedavg" and "| average attack accuracies between 0.2 and 0.5 |" in text
    # range, outlier and asymmetry (3 seeds, no spread) hold; one pair per class and no rounds decide nothing
    assert text.count("| not decided |") == 2 and "3 of 5 claims hold." in text
