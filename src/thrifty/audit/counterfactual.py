"""Counterfactual invariance: does the model answer differently when only the person in a sentence changes?

For each attribute (gender, religion, ...) and each group in it:
- the mean predicted probability of each class over the group's sentences;
- the label change rate: of the pairs (a sentence of this group, the same template with a term of another group of
  the attribute), the share whose predicted labels differ (CheckList's invariance test, failure rate);
and for each pair of groups, paired by template (each template's mean over the group's terms, so the unit is the
template and the pairs are independent of how many terms a group has):
- the mean difference in a class's probability with a bootstrap 95% confidence interval (over templates) and Cohen's
  d_z (mean over standard deviation of the differences);
- the paired t-test and the Wilcoxon signed-rank test, both two-sided, each Holm-corrected over every comparison of
  the audit; a gap is *statistically significant* when the corrected Wilcoxon p is below alpha (it assumes no
  normality), and *significant* (flagged, counted in `significant_gaps`) when it is that and also at least `min_gap`
  (a practical threshold on the absolute difference in probability, 0.05 by default): with enough templates a
  consistent gap of 0.005 is statistically clear and still too small to matter.
p-values are kept to 4 significant digits, never rounded to 0 (a p below the float floor, ~5e-324, is 0).
For two classes only the second class (the positive one, or `positive_label`) is tested: the other is its complement.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Optional, Sequence

import numpy as np

from thrifty.audit.sets import CounterfactualSet


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error): sorted p_(i) x (m - i), running maximum, capped at 1."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted.tolist()


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, resamples: int, level: float = 0.95) -> list[float]:
    """Percentile interval of the mean over `resamples` resamples with replacement."""
    if len(values) < 2:
        return [float(values.mean()), float(values.mean())] if len(values) else [0.0, 0.0]
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return [round(float(np.percentile(means, tail)), 4), round(float(np.percentile(means, 100 - tail)), 4)]


def paired_tests(differences: np.ndarray) -> dict[str, float]:
    from scipy.stats import ttest_1samp, wilcoxon

    if len(differences) < 2 or np.allclose(differences, 0.0):
        return {"t_p": 1.0, "wilcoxon_p": 1.0}
    t_p = float(ttest_1samp(differences, 0.0).pvalue)
    if not np.isfinite(t_p):  # every difference the same, not zero: no spread to test against
        t_p = 0.0
    try:
        w_p = float(wilcoxon(differences).pvalue)
    except ValueError:  # all differences zero after rounding
        w_p = 1.0
    return {"t_p": t_p, "wilcoxon_p": w_p}


def tested_classes(label_names: Sequence[str], positive_label: Optional[str]) -> list[int]:
    if len(label_names) == 2:
        return [list(label_names).index(positive_label) if positive_label in label_names else 1]
    return list(range(len(label_names)))


def significant_digits(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits (0.000012345 -> 1.234e-05), where round(value, 6) would give 0."""
    return float(f"{value:.{digits}g}")


def analyse(cset: CounterfactualSet, probabilities: dict[str, np.ndarray], label_names: Sequence[str], *,
            positive_label: Optional[str] = None, alpha: float = 0.05, min_gap: float = 0.05, resamples: int = 2000,
            seed: int = 0) -> dict[str, Any]:
    """`probabilities`: each distinct sentence -> its class probabilities. Returns per attribute the groups' figures
    and every pair's comparison; `summary` holds the largest gap and change rate and the count of significant gaps
    (Holm-corrected Wilcoxon p < alpha and |mean difference| >= min_gap)."""
    rng = np.random.default_rng(seed)
    classes = tested_classes(label_names, positive_label)
    attributes: dict[str, Any] = {}
    comparisons: list[dict[str, Any]] = []
    for attribute, groups in cset.attributes.items():
        rows = [s for s in cset.sentences if s.attribute == attribute]
        keys = sorted({s.key for s in rows}, key=lambda k: (len(k), k))
        # per group, per template: the mean probability over the group's terms, and each term's predicted label
        means = {g: {} for g in groups}
        labels: dict[str, dict[str, list[int]]] = {g: {} for g in groups}
        for g in groups:
            for key in keys:
                members = [probabilities[s.text] for s in rows if s.group == g and s.key == key]
                if members:
                    means[g][key] = np.mean(members, axis=0)
                    labels[g][key] = [int(np.argmax(p)) for p in members]
        figures = {}
        for g in groups:
            probs = np.array([probabilities[s.text] for s in rows if s.group == g])
            changed = total = 0
            for key, own in labels[g].items():
                others = [y for h in groups if h != g for y in labels[h].get(key, [])]
                changed += sum(1 for a in own for b in others if a != b)
                total += len(own) * len(others)
            group_means = np.array(list(means[g].values()))
            figures[g] = {
                "sentences": int(len(probs)), "terms": len({s.term for s in rows if s.group == g}),
                "mean_probability": {label_names[c]: round(float(probs[:, c].mean()), 4) for c in range(len(label_names))},
                "ci95": {label_names[c]: bootstrap_ci(group_means[:, c], rng, resamples) for c in classes},
                "label_change_rate": round(changed / total, 4) if total else None, "pairs_compared": total,
            }
        pairs = []
        for g, h in combinations(groups, 2):
            shared = [k for k in keys if k in means[g] and k in means[h]]
            for c in classes:
                d = np.array([means[g][k][c] - means[h][k][c] for k in shared])
                sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
                pair = {"attribute": attribute, "groups": [g, h], "class": label_names[c], "templates": len(shared),
                        "mean_difference": round(float(d.mean()), 4) if len(d) else 0.0,
                        "ci95": bootstrap_ci(d, rng, resamples),
                        "cohens_dz": round(float(d.mean()) / sd, 3) if sd > 0 else None, **paired_tests(d)}
                pairs.append(pair)
                comparisons.append(pair)
        largest = max(pairs, key=lambda p: abs(p["mean_difference"]), default=None)
        attributes[attribute] = {"groups": figures, "pairs": pairs, "sentences": len({s.text for s in rows}),
                                 "templates": len(keys),
                                 "max_gap": round(abs(largest["mean_difference"]), 4) if largest else 0.0,
                                 "max_gap_between": largest["groups"] if largest else None,
                                 "max_gap_class": largest["class"] if largest else None}
    for name in ("t_p", "wilcoxon_p"):
        for pair, adjusted in zip(comparisons, holm([p[name] for p in comparisons])):
            pair[name] = significant_digits(pair[name])
            pair[name.replace("_p", "_p_holm")] = significant_digits(adjusted)
    for pair in comparisons:
        pair["statistically_significant"] = pair["wilcoxon_p_holm"] < alpha
        pair["significant"] = pair["statistically_significant"] and abs(pair["mean_difference"]) >= min_gap
    for attribute in attributes.values():
        attribute["significant_gaps"] = sum(p["significant"] for p in attribute["pairs"])
        attribute["statistically_significant_gaps"] = sum(p["statistically_significant"] for p in attribute["pairs"])
    worst = max(attributes.items(), key=lambda a: a[1]["max_gap"], default=(None, {}))
    rates = [(a, g, f["label_change_rate"]) for a, v in attributes.items() for g, f in v["groups"].items()
             if f["label_change_rate"] is not None]
    most = max(rates, key=lambda r: r[2], default=(None, None, 0.0))
    summary = {"sentences": len(cset.texts), "comparisons": len(comparisons),
               "max_gap": worst[1].get("max_gap", 0.0), "max_gap_attribute": worst[0],
               "max_gap_between": worst[1].get("max_gap_between"),
               "max_label_change_rate": most[2], "max_label_change_group": f"{most[0]}/{most[1]}" if most[0] else None,
               "significant_gaps": sum(p["significant"] for p in comparisons),
               "statistically_significant_gaps": sum(p["statistically_significant"] for p in comparisons)}
    return {"source": cset.source, "tested_classes": [label_names[c] for c in classes], "alpha": alpha,
            "min_gap": min_gap, "correction": "Holm over all comparisons",
            "significant": f"Holm-corrected Wilcoxon p < {alpha:g} and |mean difference| >= {min_gap:g}",
            "attributes": attributes, "summary": summary}
