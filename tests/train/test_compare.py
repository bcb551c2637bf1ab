from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest, chi2, norm
from sklearn.metrics import log_loss, mean_absolute_error, r2_score, roc_auc_score

from keelson.train.compare import (
    Z_95,
    ComparisonError,
    Difference,
    Metric,
    _structural_components,
    compare,
    delong,
    mcnemar,
    paired_bootstrap,
    verdict,
)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


def roc_auc_ovr(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p, multi_class="ovr"))


def binary_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, p, labels=[0, 1]))


def multiclass_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, p, labels=list(range(p.shape[1]))))


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


def mse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(mean_absolute_error(y, p))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(r2_score(y, p))


def binary_scores(
    seed: int, n: int = 600, gain_a: float = 0.3, gain_b: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' scores: signal of the given strength plus independent noise,
    rounded to two decimals so there are many ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.random(n)  # both models see the same rows: their errors correlate
    a = np.round(np.clip(gain_a * y + 0.5 * shared + 0.4 * rng.random(n), 0, 1), 2)
    b = np.round(np.clip(gain_b * y + 0.5 * shared + 0.4 * rng.random(n), 0, 1), 2)
    return y, a, b


def multiclass_scores(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes; B's probabilities put more weight on the true class than A's."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    noise = rng.dirichlet(np.ones(3), n)
    truth = np.eye(3)[y]
    return y, 0.5 * noise + 0.5 / 3, 0.6 * noise + 0.3 * truth + 0.1 / 3


def regression_scores(
    seed: int, n: int = 500, error_a: float = 1.0, error_b: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, n)
    return y, y + rng.normal(0, error_a, n), y + rng.normal(0, error_b, n)


# --- DeLong ---------------------------------------------------------------------------------


def brute_force_components(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """psi(x, y) = 1 if the positive scores higher, 1/2 on a tie, else 0; then its means."""
    positives, negatives = p[y == 1][:, None], p[y == 0][None, :]
    psi = (positives > negatives) + 0.5 * (positives == negatives)
    return psi.mean(axis=1), psi.mean(axis=0)


def test_structural_components_equal_brute_force_with_ties() -> None:
    y, a, b = binary_scores(1, n=300)
    assert np.unique(a).size < 150  # many ties
    v10, v01 = _structural_components(y, np.vstack([a, b]))
    for model, scores in enumerate((a, b)):
        expected_v10, expected_v01 = brute_force_components(y, scores)
        np.testing.assert_allclose(v10[model], expected_v10, atol=1e-12)
        np.testing.assert_allclose(v01[model], expected_v01, atol=1e-12)
        assert v10[model].mean() == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_delong_equals_brute_force_variance() -> None:
    y, a, b = binary_scores(2, n=400, gain_b=0.4)
    (v10_a, v01_a), (v10_b, v01_b) = brute_force_components(y, a), brute_force_components(y, b)
    variance = np.var(v10_b - v10_a, ddof=1) / v10_a.size + np.var(v01_b - v01_a, ddof=1) / (
        v01_a.size
    )
    delta = roc_auc_score(y, b) - roc_auc_score(y, a)
    diff = delong(y, a, b)
    assert diff.method == "DeLong" and diff.metric == "roc_auc" and diff.higher_is_better
    assert diff.delta == pytest.approx(delta, abs=1e-12)
    assert diff.low == pytest.approx(delta - Z_95 * math.sqrt(variance), abs=1e-12)
    assert diff.high == pytest.approx(delta + Z_95 * math.sqrt(variance), abs=1e-12)
    assert diff.p_value == pytest.approx(2 * norm.sf(abs(delta) / math.sqrt(variance)))


def test_delong_rejects_a_true_null_about_five_percent_of_the_time() -> None:
    rejections = [delong(*binary_scores(seed, n=300)).p_value < 0.05 for seed in range(200)]
    assert 0.01 <= np.mean(rejections) <= 0.10


def test_delong_needs_both_classes() -> None:
    with pytest.raises(ComparisonError, match="2 positive and 2 negative"):
        delong(np.array([0, 0, 0, 1]), np.linspace(0, 1, 4), np.linspace(0, 1, 4))


# --- identical, better, noise ---------------------------------------------------------------


def test_identical_models_show_no_difference() -> None:
    y, a, _ = binary_scores(3)
    for diff in (
        delong(y, a, a),
        paired_bootstrap(y, a, a, roc_auc, True, resamples=200, strata=y),
        paired_bootstrap(y, a, a, binary_log_loss, False, resamples=200, name="log_loss"),
    ):
        assert (diff.delta, diff.low, diff.high, diff.p_value) == (0.0, 0.0, 0.0, 1.0)
        assert diff.better is None
        assert verdict(diff, "v1", "v2").startswith("no significant difference in ")


def test_a_clearly_better_model_is_detected_either_way_round() -> None:
    y, a, b = binary_scores(4, gain_b=0.6)
    forward, backward = delong(y, a, b), delong(y, b, a)
    assert forward.better == "b" and forward.low > 0
    assert backward.better == "a" and backward.high < 0
    booted = paired_bootstrap(
        y, a, b, binary_log_loss, False, resamples=500, strata=y, name="log_loss"
    )
    assert booted.better == "b" and booted.high < 0  # lower log loss
    assert verdict(forward, "v1", "v2").startswith("B (v2) is better by ")
    assert verdict(backward, "v1", "v2").startswith("A (v1) is better by ")


def test_a_noise_only_difference_is_not_detected() -> None:
    y, a, b = binary_scores(5)
    assert a.tolist() != b.tolist()
    assert delong(y, a, b).better is None
    assert paired_bootstrap(y, a, b, roc_auc, True, resamples=500, strata=y).better is None


def test_bootstrap_and_delong_agree_on_roc_auc() -> None:
    y, a, b = binary_scores(6, n=1000, gain_b=0.4)
    exact, booted = delong(y, a, b), paired_bootstrap(y, a, b, roc_auc, True, strata=y)
    assert booted.delta == pytest.approx(exact.delta)
    assert booted.low == pytest.approx(exact.low, abs=0.01)
    assert booted.high == pytest.approx(exact.high, abs=0.01)


# --- paired bootstrap -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "metric", "data"),
    [
        ("roc_auc", roc_auc, binary_scores(7, n=300)),
        ("log_loss", binary_log_loss, binary_scores(7, n=300)),
        ("log_loss", multiclass_log_loss, multiclass_scores(7, n=300)),
        ("roc_auc_ovr", roc_auc_ovr, multiclass_scores(7, n=300)),
        ("rmse", rmse, regression_scores(7, n=300)),
        ("mae", mae, regression_scores(7, n=300)),
        ("r2", r2, regression_scores(7, n=300)),
    ],
)
def test_scoring_all_resamples_at_once_equals_calling_the_metric(
    name: str, metric: Metric, data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    y, a, b = data
    strata = None if y.dtype.kind == "f" else y
    calls: list[str] = []

    def counted(t: np.ndarray, s: np.ndarray) -> float:
        calls.append(name)
        return metric(t, s)

    fast = paired_bootstrap(y, a, b, counted, True, resamples=150, seed=1, name=name, strata=strata)
    assert len(calls) == 2  # once per model on all rows: the resamples were scored at once
    looped = paired_bootstrap(y, a, b, counted, True, resamples=150, seed=1, strata=strata)
    assert len(calls) == 2 + 2 + 2 * 150 and looped.metric == "counted"
    for field in ("value_a", "value_b", "delta", "low", "high", "p_value"):
        assert getattr(fast, field) == pytest.approx(getattr(looped, field), abs=1e-10), field


def test_a_known_name_on_a_different_metric_calls_the_metric() -> None:
    y, a, b = regression_scores(8, error_b=1.2)
    calls: list[int] = []

    def counted_mse(t: np.ndarray, s: np.ndarray) -> float:
        calls.append(1)
        return mse(t, s)

    named_rmse = paired_bootstrap(y, a, b, counted_mse, False, resamples=200, name="rmse")
    assert len(calls) == 2 + 2 * 200
    assert named_rmse.value_a == pytest.approx(mse(y, a))
    assert named_rmse.low == pytest.approx(paired_bootstrap(y, a, b, mse, False, resamples=200).low)


def test_stratified_resamples_keep_every_class() -> None:
    y, a, b = binary_scores(9, n=60)
    y = np.zeros(60, dtype=int)
    y[[3, 30, 50]] = 1  # a plain resample misses all three positives about 1 time in 20
    seen: list[int] = []

    def counting(t: np.ndarray, s: np.ndarray) -> float:
        seen.append(int(t.sum()))
        return float(np.mean(s[t == 1])) if t.any() else math.nan

    plain = paired_bootstrap(y, a, b, counting, True, resamples=200)
    assert 0 in seen and len(set(seen)) > 2
    assert plain.low <= plain.delta <= plain.high  # resamples without a positive are dropped
    seen.clear()
    paired_bootstrap(y, a, b, counting, True, resamples=200, strata=y)
    assert set(seen) == {3}


def test_multiclass_log_loss_through_the_paired_bootstrap() -> None:
    y, a, b = multiclass_scores(10)
    diff = paired_bootstrap(
        y, a, b, multiclass_log_loss, False, resamples=500, strata=y, name="log_loss"
    )
    assert diff.value_a == pytest.approx(log_loss(y, a))
    assert diff.delta < 0 and diff.better == "b"
    assert diff.method == "paired bootstrap"
    assert diff.p_value == pytest.approx(1 / 501)  # floored: no resample favoured A


def test_regression_rmse_through_the_paired_bootstrap_lower_is_better() -> None:
    y, a, b = regression_scores(11, error_a=1.3, error_b=1.0)
    diff = paired_bootstrap(y, a, b, rmse, False, resamples=500)
    assert diff.delta < 0 and diff.high < 0 and diff.better == "b"
    sentence = verdict(diff, "old", "new")
    assert sentence.startswith("B (new) is better by ")
    gain, unit = sentence.removeprefix("B (new) is better by ").split(" ")[:2]
    assert (float(gain), unit) == (pytest.approx(-diff.delta, abs=0.01), "RMSE,")
    assert "−" not in sentence.split("CI")[1]  # the winner's gain is shown positive
    assert verdict(paired_bootstrap(y, b, a, rmse, False, resamples=500), "new", "old").startswith(
        "A (new) is better by "
    )


def test_bootstrap_rejects_bad_input() -> None:
    y, a, b = regression_scores(12)
    with pytest.raises(ComparisonError, match="model B has 499 rows"):
        paired_bootstrap(y, a, b[:-1], rmse, False)
    with pytest.raises(ComparisonError, match="resamples"):
        paired_bootstrap(y, a, b, rmse, False, resamples=0)


# --- McNemar --------------------------------------------------------------------------------


def labels_with(only_a: int, only_b: int, both: int = 50, neither: int = 10) -> tuple:
    """Labels and two predictions with the given counts of (dis)agreement in correctness."""
    y = np.zeros(only_a + only_b + both + neither, dtype=int)
    right_a = np.r_[np.ones(only_a), np.zeros(only_b), np.ones(both), np.zeros(neither)]
    right_b = np.r_[np.zeros(only_a), np.ones(only_b), np.ones(both), np.zeros(neither)]
    return y, np.where(right_a == 1, 0, 1), np.where(right_b == 1, 0, 2)


def test_mcnemar_exact_below_25_discordant_rows() -> None:
    result = mcnemar(*labels_with(3, 12))
    assert (result.a_right_b_wrong, result.a_wrong_b_right, result.method) == (3, 12, "exact")
    assert result.p_value == pytest.approx(binomtest(3, 15, 0.5).pvalue)


def test_mcnemar_chi2_with_continuity_correction_from_25_rows() -> None:
    result = mcnemar(*labels_with(10, 30))
    assert result.method == "chi2"
    assert result.statistic == pytest.approx((20 - 1) ** 2 / 40)
    assert result.p_value == pytest.approx(chi2.sf((20 - 1) ** 2 / 40, 1))
    assert result.p_value == pytest.approx(binomtest(10, 40, 0.5).pvalue, abs=0.002)
    balanced = mcnemar(*labels_with(13, 12))  # 25 discordant rows, nearly balanced
    assert (balanced.method, balanced.statistic, balanced.p_value) == ("chi2", 0.0, 1.0)


def test_mcnemar_without_discordant_rows() -> None:
    result = mcnemar(*labels_with(0, 0))
    assert (result.p_value, result.method) == (1.0, "exact")


# --- verdicts and the whole comparison ------------------------------------------------------


def test_verdict_sentences() -> None:
    better = Difference("roc_auc", 0.80, 0.812, 0.012, 0.004, 0.020, 0.003, "DeLong", True)
    assert verdict(better, "churn v2", "churn v3") == (
        "B (churn v3) is better by 0.012 ROC-AUC, 95 % CI [0.004, 0.020], DeLong p = 0.003"
    )
    same = Difference("rmse", 1.0, 1.004, 0.004, -0.010, 0.018, 0.61, "paired bootstrap", False)
    assert verdict(same, "a", "b") == (
        "no significant difference in RMSE: Δ(B − A) = +0.004, 95 % CI [−0.010, 0.018], "
        "paired bootstrap p = 0.61"
    )
    worse = Difference("rmse", 1.0, 1.02, 0.02, 0.01, 0.03, 0.0002, "paired bootstrap", False)
    assert worse.better == "a"
    assert verdict(worse, "old", "") == (
        "A (old) is better by 0.020 RMSE, 95 % CI [0.010, 0.030], paired bootstrap p < 0.001"
    )


def test_compare_a_binary_task() -> None:
    y, a, b = binary_scores(13, gain_b=0.6)
    metrics = {"roc_auc": (roc_auc, True), "log_loss": (binary_log_loss, False)}
    result = compare("binary", y, a, b, a >= 0.5, b >= 0.5, metrics, seed=0, resamples=300)
    assert [d.method for d in result.differences] == ["DeLong", "paired bootstrap"]
    assert result.mcnemar is not None
    lines = result.lines("churn v2", "churn v3")
    assert len(lines) == 3
    assert lines[0].startswith("B (churn v3) is better by ")
    assert lines[2].startswith("McNemar (")
    document = json.loads(json.dumps(result.to_dict()))
    assert document["differences"][0]["better"] == "b"
    assert document["mcnemar"]["method"] == result.mcnemar.method


def test_compare_a_regression_task_and_a_multiclass_task() -> None:
    y, a, b = regression_scores(14)
    result = compare("regression", y, a, b, None, None, {"rmse": (rmse, False)}, resamples=200)
    assert result.mcnemar is None and result.to_dict()["mcnemar"] is None
    assert result.lines()[0].startswith("no significant difference in RMSE")
    y, a, b = multiclass_scores(14)
    labels_a, labels_b = a.argmax(axis=1), b.argmax(axis=1)
    metrics = {"roc_auc_ovr": (roc_auc_ovr, True), "log_loss": (multiclass_log_loss, False)}
    result = compare("multiclass", y, a, b, labels_a, labels_b, metrics, resamples=200)
    assert {d.method for d in result.differences} == {"paired bootstrap"}
    assert all(d.better == "b" for d in result.differences)
    assert result.mcnemar is not None and result.mcnemar.a_wrong_b_right > 0


def test_compare_names_an_unknown_task() -> None:
    y, a, b = regression_scores(15)
    with pytest.raises(ComparisonError, match="Got 'ranking' instead"):
        compare("ranking", y, a, b, None, None, {"rmse": (rmse, False)})
