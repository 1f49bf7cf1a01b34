"""The statistics of `thrifty monitor`: is recent traffic still like the data the model was trained and checked on?

Each check returns a dict with its figures, the threshold it is judged by, and `flagged`. A check needs both a
statistically clear difference (a small p-value; with thousands of texts any difference is "significant") and
one large enough to matter (an effect size), so a monitor wired to a retraining trigger does not fire on noise.

- lengths: two-sample Kolmogorov-Smirnov test on token counts (scipy); flagged at p < 0.01 and KS D >= 0.1.
- unknown tokens: the share of tokens the tokenizer maps to its unknown token, two-proportion z-test; flagged at
  p < 0.01 and a difference of at least 1 percentage point.
- embeddings: a domain classifier (logistic regression, 5-fold cross-validated) tells reference embeddings from
  recent ones; ROC AUC 0.5 means indistinguishable. Flagged at AUC > 0.55, Evidently's default for text drift.
- predictions: the labels the model gives recent texts against those it gives the validation texts, chi-square
  test on the counts; flagged at p < 0.01 and a total variation distance >= 0.05.
- accuracy: on predictions that received feedback, per period, with Wilson 95% intervals; flagged when the
  interval of all recent feedback lies wholly below the validation accuracy. Accuracy is reported only from
  MIN_FEEDBACK rows (`thrifty monitor --min-feedback N`), overall and per period: with fewer, the check gives the
  number of rows it has and no verdict (`judged: false`), neither ok nor flagged.

A check that cannot judge (too few recent texts or feedback rows) says so with `judged: false` and a `note`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

MIN_TEXTS = 30  # fewer recent texts than this: checks report figures but never flag, and give no verdict
MIN_FEEDBACK = 30  # fewer feedback rows than this: no accuracy (overall, or of a period), no verdict
P_VALUE = 0.01
KS_EFFECT = 0.1
UNKNOWN_EFFECT = 0.01
DOMAIN_AUC = 0.55
LABEL_TVD = 0.05


def length_drift(reference: Sequence[int], recent: Sequence[int]) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    result = ks_2samp(reference, recent)
    enough = len(recent) >= MIN_TEXTS
    return {"reference_median": float(np.median(reference)), "recent_median": float(np.median(recent)),
            "ks_statistic": round(float(result.statistic), 4), "p_value": float(result.pvalue),
            "threshold": f"p < {P_VALUE} and KS D >= {KS_EFFECT}",
            "flagged": bool(enough and result.pvalue < P_VALUE and result.statistic >= KS_EFFECT)}


def unknown_token_drift(reference: tuple[int, int], recent: tuple[int, int]) -> dict[str, Any]:
    """(unknown tokens, all tokens) of each side."""
    (u1, n1), (u2, n2) = reference, recent
    p1, p2 = u1 / max(n1, 1), u2 / max(n2, 1)
    pooled = (u1 + u2) / max(n1 + n2, 1)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / max(n1, 1) + 1 / max(n2, 1)), 1e-18))
    z = (p2 - p1) / se
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return {"reference_rate": round(p1, 5), "recent_rate": round(p2, 5), "p_value": p_value,
            "threshold": f"p < {P_VALUE} and a rise of >= {UNKNOWN_EFFECT:.0%} of tokens",
            "flagged": bool(n2 > 0 and p_value < P_VALUE and p2 - p1 >= UNKNOWN_EFFECT)}


def embedding_drift(reference: np.ndarray, recent: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Domain classifier ROC AUC on balanced samples (the larger side subsampled to the smaller's size)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = min(len(reference), len(recent))
    if n < 10:
        return {"roc_auc": None, "texts_per_side": n, "threshold": f"ROC AUC > {DOMAIN_AUC}", "flagged": False,
                "note": "fewer than 10 texts on a side"}
    a = reference[rng.choice(len(reference), n, replace=False)]
    b = recent[rng.choice(len(recent), n, replace=False)]
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    folds = StratifiedKFold(n_splits=min(5, n), shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(max_iter=1000, C=1.0), x, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    return {"roc_auc": round(auc, 4), "texts_per_side": n, "threshold": f"ROC AUC > {DOMAIN_AUC}",
            "flagged": bool(n >= MIN_TEXTS and auc > DOMAIN_AUC)}


def prediction_drift(labels: Sequence[str], reference: Sequence[str], recent: Sequence[str]) -> dict[str, Any]:
    from scipy.stats import chi2_contingency

    ref = np.array([sum(1 for r in reference if r == name) for name in labels], dtype=float)
    now = np.array([sum(1 for r in recent if r == name) for name in labels], dtype=float)
    shares_ref, shares_now = ref / max(ref.sum(), 1), now / max(now.sum(), 1)
    tvd = 0.5 * float(np.abs(shares_ref - shares_now).sum())
    used = (ref + now) > 0
    if used.sum() >= 2 and ref.sum() > 0 and now.sum() > 0:
        p_value = float(chi2_contingency(np.stack([ref[used], now[used]]))[1])
    else:
        p_value = 1.0
    return {"labels": list(labels), "reference_shares": [round(float(s), 4) for s in shares_ref],
            "recent_shares": [round(float(s), 4) for s in shares_now], "total_variation": round(tvd, 4),
            "p_value": p_value, "threshold": f"p < {P_VALUE} and total variation >= {LABEL_TVD}",
            "flagged": bool(len(recent) >= MIN_TEXTS and p_value < P_VALUE and tvd >= LABEL_TVD)}


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at small counts and near 0 or 1)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def feedback_rows(count: int) -> str:
    return f"{count} feedback row{'' if count == 1 else 's'}"


def accuracy_over_time(periods: Sequence[str], correct: Sequence[bool], validation_accuracy: Optional[float],
                       min_feedback: int = MIN_FEEDBACK) -> dict:
    """Accuracy of the predictions with feedback, per period (in order of appearance) and overall: each only from
    `min_feedback` rows; with fewer, the count it has and no verdict."""
    by_period: dict[str, list[bool]] = {}
    for period, ok in zip(periods, correct):
        by_period.setdefault(period, []).append(bool(ok))
    rows = []
    for period, oks in by_period.items():
        row: dict[str, Any] = {"period": period, "feedback": len(oks), "accuracy": None, "ci95": None}
        if len(oks) >= min_feedback:
            low, high = wilson(sum(oks), len(oks))
            row.update(accuracy=round(sum(oks) / len(oks), 4), ci95=[round(low, 4), round(high, 4)])
        rows.append(row)
    total = len(correct)
    threshold = "the 95% interval of recent accuracy wholly below the validation accuracy"
    if total < min_feedback:
        return {"feedback": total, "min_feedback": min_feedback, "accuracy": None, "ci95": None,
                "validation_accuracy": validation_accuracy, "periods": rows, "threshold": threshold, "judged": False,
                "note": f"{feedback_rows(total)}, needs {min_feedback}", "flagged": False}
    overall = sum(bool(c) for c in correct)
    low, high = wilson(overall, total)
    flagged = bool(validation_accuracy is not None and high < validation_accuracy)
    return {"feedback": total, "min_feedback": min_feedback, "accuracy": round(overall / total, 4),
            "ci95": [round(low, 4), round(high, 4)], "validation_accuracy": validation_accuracy, "periods": rows,
            "threshold": threshold, "judged": True, "flagged": flagged}
