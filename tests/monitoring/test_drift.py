"""The drift statistics: quiet on samples of one distribution, flagged on clear shifts, sound intervals."""

import numpy as np
import pytest

from thrifty.monitoring import drift


def test_lengths_flag_a_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    reference = rng.poisson(20, 2000)
    assert not drift.length_drift(reference, rng.poisson(20, 500))["flagged"]
    shifted = drift.length_drift(reference, rng.poisson(35, 500))
    assert shifted["flagged"] and shifted["ks_statistic"] > 0.5 and shifted["recent_median"] > 30


def test_lengths_never_flag_a_handful_of_texts():
    assert not drift.length_drift(list(range(100)), [500] * 5)["flagged"]  # below MIN_TEXTS


def test_unknown_tokens_flag_a_real_rise_only():
    assert not drift.unknown_token_drift((10, 10000), (3, 2000))["flagged"]
    rise = drift.unknown_token_drift((10, 10000), (200, 2000))
    assert rise["flagged"] and rise["recent_rate"] == 0.1


def test_embeddings_domain_classifier():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 16))
    same = drift.embedding_drift(reference, rng.normal(size=(300, 16)))
    assert not same["flagged"] and 0.4 < same["roc_auc"] < 0.6
    moved = drift.embedding_drift(reference, rng.normal(size=(300, 16)) + 0.8)
    assert moved["flagged"] and moved["roc_auc"] > 0.9 and moved["texts_per_side"] == 300


def test_prediction_shares():
    labels = ["neg", "pos"]
    reference = ["neg"] * 50 + ["pos"] * 50
    assert not drift.prediction_drift(labels, reference, ["neg"] * 48 + ["pos"] * 52)["flagged"]
    moved = drift.prediction_drift(labels, reference, ["neg"] * 90 + ["pos"] * 10)
    assert moved["flagged"] and moved["total_variation"] == pytest.approx(0.4) and moved["recent_shares"] == [0.9, 0.1]


def test_wilson_interval_matches_the_textbook_value():
    low, high = drift.wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert drift.wilson(0, 0) == (0.0, 1.0)


def test_accuracy_over_time_flags_a_clear_drop():
    periods = ["2026-11-27"] * 40 + ["2026-11-28"] * 40
    good = drift.accuracy_over_time(periods, [True] * 72 + [False] * 8, validation_accuracy=0.9)
    assert not good["flagged"] and [p["feedback"] for p in good["periods"]] == [40, 40]
    bad = drift.accuracy_over_time(periods, [True] * 30 + [False] * 50, validation_accuracy=0.9)
    assert bad["flagged"] and bad["ci95"][1] < 0.9


def test_accuracy_needs_min_feedback_rows_overall_and_per_period():
    one = drift.accuracy_over_time(["2026-11-28"], [False], validation_accuracy=0.9)
    assert one["accuracy"] is None and one["ci95"] is None and not one["flagged"] and one["judged"] is False
    assert one["note"] == "1 feedback row, needs 30" and one["min_feedback"] == drift.MIN_FEEDBACK == 30
    assert drift.accuracy_over_time([], [], 0.9)["note"] == "0 feedback rows, needs 30"
    periods = ["2026-11-27"] * 5 + ["2026-11-28"] * 35
    mixed = drift.accuracy_over_time(periods, [True] * 40, validation_accuracy=0.9)
    assert mixed["judged"] and mixed["accuracy"] == 1.0  # 40 rows overall...
    assert [(p["feedback"], p["accuracy"]) for p in mixed["periods"]] == [(5, None), (35, 1.0)]  # ...5 in a day: none
    assert drift.accuracy_over_time(["d"] * 5, [False] * 5, 0.9, min_feedback=5)["flagged"]  # the setting moves it
