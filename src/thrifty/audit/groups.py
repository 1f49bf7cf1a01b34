"""Fairness on labelled data with a group column: per-group metrics through Fairlearn's MetricFrame, and for binary
tasks with identity annotations the Jigsaw unintended-bias AUCs (Borkan et al. 2019, "Nuanced Metrics for Measuring
Unintended Bias with Real Data for Text Classification").

Group metrics: accuracy and count per group for any classifier; for a binary task (or one-vs-rest for
`positive_label`) also selection rate, false positive rate and false negative rate per group, and Fairlearn's
demographic-parity and equalised-odds differences (largest gap between groups).

Jigsaw AUCs per subgroup (texts that mention the identity):
- subgroup AUC: positives and negatives of the subgroup only (can the model tell them apart within the group?);
- BPSN (background positive, subgroup negative): the subgroup's negatives with the other texts' positives; low when
  the model scores harmless mentions of the group as positive (false alarms on the group);
- BNSP (background negative, subgroup positive): the subgroup's positives with the other texts' negatives;
and the generalised (power) mean of each over subgroups with p = -5, which leans towards the worst subgroup, and
Jigsaw's final score: 0.25 x overall AUC + 0.75 x the mean of the three power means.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

POWER = -5.0


def power_mean(values: Sequence[float], p: float = POWER) -> Optional[float]:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(np.mean(np.power(np.asarray(values, dtype=float), p)) ** (1.0 / p))


def _auc(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    from sklearn.metrics import roc_auc_score

    if len(labels) == 0 or labels.min() == labels.max():
        return None  # one class only: no ranking to judge
    return round(float(roc_auc_score(labels, scores)), 4)


def jigsaw_aucs(labels: Sequence[int], scores: Sequence[float], subgroups: dict[str, Sequence[bool]]) -> dict[str, Any]:
    """`labels` 1 = positive (e.g. toxic), `scores` the positive class's probability, `subgroups` name -> mask."""
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    per: dict[str, Any] = {}
    for name, mask in subgroups.items():
        m = np.asarray(mask, dtype=bool)
        bpsn = (m & (y == 0)) | (~m & (y == 1))
        bnsp = (m & (y == 1)) | (~m & (y == 0))
        per[name] = {"texts": int(m.sum()), "positives": int((m & (y == 1)).sum()),
                     "subgroup_auc": _auc(y[m], s[m]), "bpsn_auc": _auc(y[bpsn], s[bpsn]),
                     "bnsp_auc": _auc(y[bnsp], s[bnsp])}
    overall = _auc(y, s)
    means = {f"{k}_power_mean": (round(v, 4) if (v := power_mean([g[k] for g in per.values()])) is not None else None)
             for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc")}
    final = (0.25 * overall + 0.75 * float(np.mean(list(means.values())))
             if overall is not None and all(v is not None for v in means.values()) else None)
    worst = min(((n, g["subgroup_auc"]) for n, g in per.items() if g["subgroup_auc"] is not None),
                key=lambda x: x[1], default=(None, None))
    return {"texts": int(len(y)), "overall_auc": overall, "subgroups": per, **means,
            "final_score": round(final, 4) if final is not None else None, "power": POWER,
            "worst_subgroup": worst[0], "min_subgroup_auc": worst[1]}


def group_metrics(true: Sequence[str], predicted: Sequence[str], groups: Sequence[str], label_names: Sequence[str],
                  positive_label: Optional[str] = None) -> dict[str, Any]:
    """Per-group metrics through Fairlearn; binary ones for two labels (the second, or `positive_label`)."""
    from fairlearn.metrics import (MetricFrame, count, demographic_parity_difference, equalized_odds_difference,
                                   false_negative_rate, false_positive_rate, selection_rate)
    from sklearn.metrics import accuracy_score

    y_true, y_pred, sensitive = np.asarray(true), np.asarray(predicted), np.asarray(groups)
    metrics: dict[str, Any] = {"accuracy": accuracy_score, "count": count}
    positive = positive_label if positive_label is not None else (label_names[1] if len(label_names) == 2 else None)
    binary = positive is not None
    if binary:
        yt, yp = (y_true == positive).astype(int), (y_pred == positive).astype(int)
        metrics.update({"selection_rate": selection_rate, "false_positive_rate": false_positive_rate,
                        "false_negative_rate": false_negative_rate})
        frame = MetricFrame(metrics=metrics, y_true=yt, y_pred=yp, sensitive_features=sensitive)
    else:
        frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    by_group = {str(g): {k: (int(v) if k == "count" else round(float(v), 4)) for k, v in row.items()}
                for g, row in frame.by_group.to_dict(orient="index").items()}
    differences = {k: round(float(v), 4) for k, v in frame.difference().items() if k != "count"}
    result = {"texts": int(len(y_true)), "groups": by_group, "differences": differences,
              "positive_label": positive, "overall": {k: (int(v) if k == "count" else round(float(v), 4))
                                                      for k, v in frame.overall.items()}}
    if binary:
        result["demographic_parity_difference"] = round(float(demographic_parity_difference(
            yt, yp, sensitive_features=sensitive)), 4)
        result["equalized_odds_difference"] = round(float(equalized_odds_difference(
            yt, yp, sensitive_features=sensitive)), 4)
    return result
