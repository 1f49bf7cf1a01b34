"""The audit's HTML report: the verdict, the headline figures with what each rests on, and plots (embedded PNGs, one
file to attach to a review): per attribute the groups' mean probability of the tested class with 95% intervals, the
label change rates, the association tests' effect sizes, and the group and Jigsaw metrics when measured."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def plots(report: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    cf = report.get("counterfactual", {})
    if cf.get("attributes"):
        focus = cf["tested_classes"][0] if len(cf["tested_classes"]) == 1 else None
        attributes = list(cf["attributes"].items())
        fig, axes = plt.subplots(len(attributes), 1, figsize=(7, 1.0 + 0.32 * sum(len(a["groups"]) for _, a in attributes)
                                                             + 0.5 * len(attributes)), squeeze=False)
        for ax, (name, attribute) in zip(axes[:, 0], attributes):
            label = focus or attribute["max_gap_class"]
            groups = list(attribute["groups"].items())
            ys = np.arange(len(groups))
            means = [g["mean_probability"][label] for _, g in groups]
            cis = [g["ci95"][label] for _, g in groups]
            errors = [[max(0.0, m - c[0]) for m, c in zip(means, cis)], [max(0.0, c[1] - m) for m, c in zip(means, cis)]]
            ax.barh(ys, means, xerr=errors, capsize=3, color="tab:blue", alpha=0.75)
            ax.set_yticks(ys, labels=[f"{g} ({f['sentences']})" for g, f in groups], fontsize=8)
            ax.set_xlim(0, 1)
            ax.set_title(f"{name}: P({label}), gap {attribute['max_gap']:.3f}, "
                         f"{attribute['significant_gaps']} significant", fontsize=9)
        axes[-1, 0].set_xlabel("mean predicted probability over templates (95% bootstrap interval); (n sentences)")
        fig.tight_layout()
        out["groups"] = _png(fig)
        plt.close(fig)
        rates = [(f"{a}/{g}", f["label_change_rate"]) for a, v in cf["attributes"].items()
                 for g, f in v["groups"].items() if f["label_change_rate"] is not None]
        if rates:
            fig, ax = plt.subplots(figsize=(7, 0.8 + 0.22 * len(rates)))
            ax.barh(np.arange(len(rates)), [r for _, r in rates], color="tab:orange")
            ax.set_yticks(np.arange(len(rates)), labels=[n for n, _ in rates], fontsize=7)
            ax.set_xlabel("share of counterfactual pairs whose predicted label changes")
            ax.set_title("Label changes when only the person changes", fontsize=9)
            fig.tight_layout()
            out["label_changes"] = _png(fig)
            plt.close(fig)
    tests = report.get("association", {}).get("tests")
    if tests:
        fig, ax = plt.subplots(figsize=(7, 0.9 + 0.45 * len(tests)))
        names = list(tests)
        effects = [tests[n]["effect_size"] for n in names]
        ax.barh(np.arange(len(names)), effects, color=["tab:red" if tests[n]["p_value"] < 0.05 else "tab:grey"
                                                       for n in names])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(np.arange(len(names)),
                      labels=[f"{n}\n{tests[n]['targets'][0]} ~ {tests[n]['attributes'][0]}" for n in names], fontsize=7)
        ax.set_xlim(-2, 2)
        ax.set_xlabel("SEAT effect size (Cohen's d); red: permutation p < 0.05")
        fig.tight_layout()
        out["association"] = _png(fig)
        plt.close(fig)
    jig = report.get("jigsaw")
    if jig and jig["subgroups"]:
        names = list(jig["subgroups"])
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) + 2), 3.4))
        x = np.arange(len(names))
        for offset, key in ((-0.27, "subgroup_auc"), (0.0, "bpsn_auc"), (0.27, "bnsp_auc")):
            ax.bar(x + offset, [jig["subgroups"][n][key] or 0 for n in names], width=0.27, label=key)
        ax.set_xticks(x, labels=names, rotation=90 if len(names) > 6 else 0, fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"Jigsaw AUCs per subgroup (final score {jig['final_score']})", fontsize=9)
        fig.tight_layout()
        out["jigsaw"] = _png(fig)
        plt.close(fig)
    grp = report.get("groups")
    if grp:
        names = list(grp["groups"])
        keys = [k for k in ("accuracy", "selection_rate", "false_positive_rate", "false_negative_rate")
                if k in grp["groups"][names[0]]]
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) * len(keys) / 2 + 2), 3.4))
        x = np.arange(len(names))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            ax.bar(x + (i - (len(keys) - 1) / 2) * width, [grp["groups"][n][key] for n in names], width=width, label=key)
        ax.set_xticks(x, labels=[f"{n} ({grp['groups'][n]['count']})" for n in names],
                      rotation=90 if len(names) > 6 else 0, fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.set_title("Metrics per group on labelled data (n texts)", fontsize=9)
        fig.tight_layout()
        out["group_metrics"] = _png(fig)
        plt.close(fig)
    return out


def _rows(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(figure, value, what it rests on) for the summary table."""
    s = report["summary"]
    cf = report.get("counterfactual", {}).get("summary", {})
    rows = []
    if s.get("max_gap") is not None:
        rows += [("max_gap", s["max_gap"], f"{cf['max_gap_attribute']}: {' vs '.join(cf['max_gap_between'] or [])}, "
                                           f"{cf['sentences']} sentences"),
                 ("max_label_change_rate", s["max_label_change_rate"], f"{cf['max_label_change_group']}"),
                 ("significant_gaps", s["significant_gaps"], f"of {cf['comparisons']} comparisons, Holm-corrected "
                                                             f"Wilcoxon p < {report['alpha']}")]
    assoc = report.get("association", {})
    if assoc.get("summary"):
        sentences = sum(t["sentences"] for t in assoc["tests"].values())
        rows += [("max_abs_effect_size", s["max_abs_effect_size"], f"{assoc['summary']['max_effect_test']}; "
                                                                   f"{sentences} sentences in {len(assoc['tests'])} tests"),
                 ("significant_associations", s["significant_associations"], "permutation p < 0.05")]
    grp = report.get("groups")
    if grp:
        for key in ("accuracy_difference", "demographic_parity_difference", "equalized_odds_difference"):
            if s.get(key) is not None:
                rows.append((key, s[key], f"{grp['texts']} labelled texts in {len(grp['groups'])} groups"))
    jig = report.get("jigsaw")
    if jig:
        for key in ("min_subgroup_auc", "min_bpsn_auc", "min_bnsp_auc", "final_score"):
            rows.append((key, s.get(key), f"{jig['texts']} texts, {len(jig['subgroups'])} subgroups"))
    return rows


def render(report: dict[str, Any], images: dict[str, str]) -> str:
    e = html.escape
    failed = report.get("failed") or []
    status = ("FAILED: " + "; ".join(failed)) if failed else (
        f"passed: {report['fail_on']}" if report.get("fail_on") else "no thresholds set (--fail-on)")
    model = report["model"].get("folder") or report["model"].get("pretrained")
    rows = "".join(f"<tr><td>{e(name)}</td><td>{e(str(value))}</td><td>{e(rests)}</td></tr>"
                   for name, value, rests in _rows(report))
    pairs = []
    for attribute in report.get("counterfactual", {}).get("attributes", {}).values():
        for p in attribute["pairs"]:
            pairs.append(f"<tr class=\"{'significant' if p['significant'] else 'ok'}\"><td>{e(p['attribute'])}</td>"
                         f"<td>{e(' vs '.join(p['groups']))}</td><td>{e(p['class'])}</td><td>{p['mean_difference']}</td>"
                         f"<td>{e(str(p['ci95']))}</td><td>{p['cohens_dz']}</td><td>{p['t_p_holm']}</td>"
                         f"<td>{p['wilcoxon_p_holm']}</td><td>{p['templates']}</td></tr>")
    pair_table = ("<h2>Pairs of groups</h2><table id=\"pairs\"><tr><th>attribute</th><th>groups</th><th>class</th>"
                  "<th>mean difference</th><th>95% interval</th><th>d_z</th><th>paired t p (Holm)</th>"
                  f"<th>Wilcoxon p (Holm)</th><th>templates</th></tr>{''.join(pairs)}</table>") if pairs else ""
    figures = "".join(f"<figure><img alt=\"{e(name)}\" src=\"data:image/png;base64,{data}\"></figure>"
                      for name, data in images.items())
    notes = "".join(f"<p>{e(part)}: {e(report[part]['skipped'])}</p>" for part in ("counterfactual", "association")
                    if isinstance(report.get(part), dict) and "skipped" in report[part])
    source = report.get("counterfactual", {}).get("source", "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thrifty audit: {e(Path(str(model)).name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}} td,th{{padding:.3em .6em;border-bottom:1px solid #ddd;
text-align:left}} tr.significant td{{background:#fde2e1}} #status{{font-size:1.3em;font-weight:bold}}
img{{max-width:100%}}</style></head>
<body><h1>thrifty audit</h1>
<p id="status" class="{'failed' if failed else 'ok'}">{e(status)}</p>
<p>{e(str(model))}. {e(source)}</p>{notes}
<table id="summary"><tr><th>figure</th><th>value</th><th>rests on</th></tr>{rows}</table>
{figures}
{pair_table}
</body></html>
"""


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(render(report, plots(report)), encoding="utf-8")
