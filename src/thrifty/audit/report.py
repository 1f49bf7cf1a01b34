"""The audit's HTML report: the verdict, the headline figures with what each rests on, plots (embedded PNGs, one file
to attach to a review) and tables of every group and pair.

Plots stay readable however many groups there are: each shows at most `PLOT_ROWS` rows (the groups with the largest
gaps, said in its title), one row per group at a fixed height and fixed font sizes, on a fixed width that the page
shows unscaled, laid out by matplotlib's constrained layout so no label is cut off. Every group, plotted or not, is in
a table below the plots: per subgroup of the labelled data (Fairlearn's metrics and the Jigsaw AUCs), per group of
the counterfactual sentences, and per pair of groups (shaded when flagged: Holm-corrected p below alpha *and* a gap
of at least `min_gap`). p-values are written with 3 significant digits, and below `P_FLOOR` as "< 1e-16"."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_ROWS = 20  # groups per plot at most: the ones with the largest gaps; the rest are in the tables
ROW_INCHES = 0.3  # one row of a horizontal plot (30 px at DPI)
WIDTH_INCHES = 10.0  # 1,000 px: the report's column holds it unscaled
DPI = 100
FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9.5, "ytick.labelsize": 10,
        "legend.fontsize": 9.5, "figure.titlesize": 12}
# Below this a p-value says nothing more: the tests' own rounding (double precision, ~2.2e-16 relative) dominates,
# and a p under ~5e-324 is stored as 0. Written as "< 1e-16" (R's format.pval does the same at 2.2e-16).
P_FLOOR = 1e-16
BLANK = "(blank: background)"


def format_p(p: Optional[float]) -> str:
    """0.0312 -> "0.0312", 1.234e-09 -> "1.23e-09", 0.0 or 3e-20 -> "< 1e-16", None -> "n/a"."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p < P_FLOOR:
        return f"< {P_FLOOR:.0e}"
    return f"{p:.3g}"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode()


def _height(rows: int, extra: float = 1.4) -> float:
    """Figure height in inches: a fixed height per row plus room for the title, the axis label and the ticks."""
    return extra + ROW_INCHES * max(rows, 2)


def _name(group: str) -> str:
    return group if group else BLANK


def shown(ranked: list[str], limit: int = PLOT_ROWS) -> tuple[list[str], str]:
    """The first `limit` of groups ranked worst first, and the phrase saying what was left out ("" when none)."""
    if len(ranked) <= limit:
        return ranked, ""
    return ranked[:limit], f"{limit} of {len(ranked)}"


def jigsaw_order(jig: dict[str, Any]) -> list[str]:
    """Subgroups, lowest AUC first (the lowest of subgroup, BPSN and BNSP); those with none defined last."""
    def lowest(name: str) -> float:
        values = [jig["subgroups"][name][k] for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc")]
        values = [v for v in values if v is not None]
        return min(values) if values else 2.0
    return sorted(jig["subgroups"], key=lambda n: (lowest(n), n))


def group_metric_keys(grp: dict[str, Any]) -> list[str]:
    first = next(iter(grp["groups"].values()))
    return [k for k in ("accuracy", "selection_rate", "false_positive_rate", "false_negative_rate") if k in first]


def group_gap(grp: dict[str, Any], name: str) -> float:
    """A group's largest distance from the overall value over the metrics: how far it stands out."""
    return max(abs(grp["groups"][name][k] - grp["overall"][k]) for k in group_metric_keys(grp))


def group_order(grp: dict[str, Any]) -> list[str]:
    return sorted(grp["groups"], key=lambda n: (-group_gap(grp, n), n))


def counterfactual_order(attribute: dict[str, Any], label: str) -> list[str]:
    """The attribute's groups, furthest from the mean of its groups' mean probabilities first."""
    means = {g: f["mean_probability"][label] for g, f in attribute["groups"].items()}
    centre = float(np.mean(list(means.values())))
    return sorted(means, key=lambda g: (-abs(means[g] - centre), g))


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """The report's plots as matplotlib figures (closed by the caller): name -> figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Any] = {}
    with plt.rc_context(FONT):
        cf = report.get("counterfactual", {})
        if cf.get("attributes"):
            out["groups"] = _counterfactual_figure(cf)
            label_changes = _label_change_figure(cf)
            if label_changes is not None:
                out["label_changes"] = label_changes
        tests = report.get("association", {}).get("tests")
        if tests:
            out["association"] = _association_figure(tests)
        jig = report.get("jigsaw")
        if jig and jig["subgroups"]:
            out["jigsaw"] = _jigsaw_figure(jig)
        grp = report.get("groups")
        if grp and grp["groups"]:
            out["group_metrics"] = _group_metrics_figure(grp)
    return out


def _counterfactual_figure(cf: dict[str, Any]) -> Figure:
    """Per attribute, the mean probability of its focus label per group with the 95% intervals (the groups furthest
    from the mean, at most PLOT_ROWS of them, in the attribute's own order)."""
    import matplotlib.pyplot as plt

    focus = cf["tested_classes"][0] if len(cf["tested_classes"]) == 1 else None
    attributes = list(cf["attributes"].items())
    picked = []
    for name, attribute in attributes:
        label = focus or attribute["max_gap_class"]
        rows, part = shown(counterfactual_order(attribute, label))
        picked.append((name, attribute, label, [g for g in attribute["groups"] if g in rows], part))
    heights = [max(len(rows), 2) * ROW_INCHES + 0.75 for *_, rows, _ in picked]
    fig, axes = plt.subplots(len(picked), 1, figsize=(WIDTH_INCHES, sum(heights) + 0.8), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": heights})
    for ax, (name, attribute, label, rows, part) in zip(axes[:, 0], picked):
        groups = [(g, attribute["groups"][g]) for g in rows]
        ys = np.arange(len(groups))
        means = [g["mean_probability"][label] for _, g in groups]
        cis = [g["ci95"][label] for _, g in groups]
        errors = [[max(0.0, m - c[0]) for m, c in zip(means, cis)],
                  [max(0.0, c[1] - m) for m, c in zip(means, cis)]]
        ax.barh(ys, means, xerr=errors, capsize=3, color="tab:blue", alpha=0.75, height=0.7)
        ax.set_yticks(ys, labels=[f"{g} ({f['sentences']})" for g, f in groups])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{name}: P({label}), largest gap {attribute['max_gap']:.3f}, "
                     f"{attribute['significant_gaps']} flagged"
                     + (f"; the {part} groups furthest from the mean (all in the table)" if part else ""),
                     loc="left")
    axes[-1, 0].set_xlabel("mean predicted probability over templates, 95% bootstrap interval; "
                           "(n sentences)")
    return fig


def _label_change_figure(cf: dict[str, Any]) -> Optional[Figure]:
    """The share of counterfactual pairs whose predicted label changes, per attribute/group, most first; None when no
    group has one."""
    import matplotlib.pyplot as plt

    rates = sorted(((f"{a}/{g}", f["label_change_rate"]) for a, v in cf["attributes"].items()
                    for g, f in v["groups"].items() if f["label_change_rate"] is not None),
                   key=lambda r: (-r[1], r[0]))
    if not rates:
        return None
    names, part = shown([n for n, _ in rates])
    values = dict(rates)
    fig, ax = plt.subplots(figsize=(WIDTH_INCHES, _height(len(names))), layout="constrained")
    ax.barh(np.arange(len(names)), [values[n] for n in names], color="tab:orange", height=0.7)
    ax.set_yticks(np.arange(len(names)), labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.05, max(values[n] for n in names) * 1.1))
    ax.set_xlabel("share of counterfactual pairs whose predicted label changes")
    ax.set_title("Label changes when only the person changes"
                 + (f": the {part} groups with the most (all in the table)" if part else ""), loc="left")
    return fig


def _association_figure(tests: dict[str, Any]) -> Figure:
    """The SEAT effect sizes, red where the permutation test says p < 0.05."""
    import matplotlib.pyplot as plt

    names = list(tests)
    fig, ax = plt.subplots(figsize=(WIDTH_INCHES, _height(2 * len(names))), layout="constrained")
    effects = [tests[n]["effect_size"] for n in names]
    ax.barh(np.arange(len(names)), effects,
            color=["tab:red" if tests[n]["p_value"] < 0.05 else "tab:grey" for n in names])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(names)),
                  labels=[f"{n}\n{tests[n]['targets'][0]} ~ {tests[n]['attributes'][0]}" for n in names])
    ax.invert_yaxis()
    ax.set_xlim(-2, 2)
    ax.set_xlabel("SEAT effect size (Cohen's d); red: permutation p < 0.05")
    ax.set_title("Association tests on sentence embeddings", loc="left")
    return fig


def _jigsaw_figure(jig: dict[str, Any]) -> Figure:
    """The subgroup, BPSN and BNSP AUCs per subgroup (the lowest first), against the overall AUC."""
    import matplotlib.pyplot as plt

    names, part = shown(jigsaw_order(jig))
    fig, ax = plt.subplots(figsize=(WIDTH_INCHES, _height(len(names), 1.9)), layout="constrained")
    ys = np.arange(len(names))
    values = []
    for offset, key, marker in ((-0.22, "subgroup_auc", "o"), (0.0, "bpsn_auc", "s"), (0.22, "bnsp_auc", "D")):
        xs = [jig["subgroups"][n][key] for n in names]
        values += [x for x in xs if x is not None]
        ax.scatter([x if x is not None else np.nan for x in xs], ys + offset, marker=marker, s=30,
                   label=key.replace("_auc", " AUC").replace("bpsn", "BPSN").replace("bnsp", "BNSP"))
    if jig.get("overall_auc") is not None:
        ax.axvline(jig["overall_auc"], color="black", linestyle="--", linewidth=0.8,
                   label=f"overall AUC {jig['overall_auc']:.3f}")
    ax.set_yticks(ys, labels=[f"{n} ({jig['subgroups'][n]['texts']})" for n in names])
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    low = min(values + [jig.get("overall_auc") or 1.0], default=0.5)
    ax.set_xlim(max(0.0, np.floor((low - 0.02) * 20) / 20), 1.005)  # to the lowest AUC, in steps of 0.05
    ax.set_xlabel("AUC (n texts); undefined AUCs (one class in the texts) not drawn")
    ax.set_title(f"Jigsaw AUCs per subgroup, final score {jig['final_score']}"
                 + (f": the {part} subgroups with the lowest AUC (all in the table)" if part else ""),
                 loc="left")
    fig.legend(loc="outside lower center", ncol=4, frameon=False)
    return fig


def _group_metrics_figure(grp: dict[str, Any]) -> Figure:
    """One panel per metric of the labelled data's groups (those furthest from the overall value first), against the
    value over all texts."""
    import matplotlib.pyplot as plt

    names, part = shown(group_order(grp))
    keys = group_metric_keys(grp)
    fig, axes = plt.subplots(1, len(keys), figsize=(WIDTH_INCHES, _height(len(names), 1.7)), sharey=True,
                             squeeze=False, layout="constrained")
    ys = np.arange(len(names))
    for ax, key in zip(axes[0], keys):
        ax.barh(ys, [grp["groups"][n][key] for n in names], color="tab:blue", alpha=0.75, height=0.7)
        ax.axvline(grp["overall"][key], color="black", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1], labels=["0", "0.5", "1"])
        ax.set_title(key.replace("_", " ").replace("false positive", "false pos.")
                     .replace("false negative", "false neg."))
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(ys, labels=[f"{_name(n)} ({grp['groups'][n]['count']})" for n in names])
    axes[0, 0].set_ylim(len(names) - 0.5, -0.5)
    fig.supxlabel("value per group (dashed: all texts); (n texts)", fontsize=10)
    fig.suptitle(f"Metrics per group on labelled data ({grp['group_column']})"
                 + (f": the {part} groups furthest from the overall value (all in the table)" if part else ""),
                 x=0.01, ha="left")
    return fig


def plots(report: dict[str, Any]) -> dict[str, str]:
    """The plots as base64 PNGs."""
    import matplotlib.pyplot as plt

    out = {}
    for name, fig in figures(report).items():
        out[name] = _png(fig)
        plt.close(fig)
    return out


def _rows(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(figure, value, what it rests on) for the summary table."""
    s = report["summary"]
    cf = report.get("counterfactual", {}).get("summary", {})
    rows = []
    if s.get("max_gap") is not None:
        min_gap = report.get("min_gap", report.get("counterfactual", {}).get("min_gap", 0.0))
        rows += [("max_gap", s["max_gap"], f"{cf['max_gap_attribute']}: {' vs '.join(cf['max_gap_between'] or [])}, "
                                           f"{cf['sentences']} sentences"),
                 ("max_label_change_rate", s["max_label_change_rate"], f"{cf['max_label_change_group']}"),
                 ("significant_gaps", s["significant_gaps"],
                  f"of {cf['comparisons']} comparisons: Holm-corrected Wilcoxon p < {report['alpha']} and a gap of at "
                  f"least {min_gap:g} (--min-gap); {cf.get('statistically_significant_gaps', '?')} pass the p-value "
                  "alone")]
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


def _cell(value: Any) -> str:
    if value is None:
        return "<td class=\"na\">undefined</td>"
    if isinstance(value, float):
        return f"<td>{value:.4f}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def subgroup_table(report: dict[str, Any], plotted: set[str]) -> str:
    """Every subgroup of the labelled data: Fairlearn's metrics and the Jigsaw AUCs, worst first."""
    grp, jig = report.get("groups"), report.get("jigsaw")
    if not grp and not jig:
        return ""
    e = html.escape
    keys = group_metric_keys(grp) if grp else []
    auc_keys = ("subgroup_auc", "bpsn_auc", "bnsp_auc") if jig else ()
    order = jigsaw_order(jig) if jig else []
    order += [n for n in (group_order(grp) if grp else []) if n not in order]
    names = {"subgroup_auc": "subgroup AUC", "bpsn_auc": "BPSN AUC", "bnsp_auc": "BNSP AUC"}
    head = "".join(f"<th>{e(names.get(k, k.replace('_', ' ')))}</th>" for k in ("texts", *keys, *auc_keys))
    if jig:
        head += "<th>positives</th>"
    rows = []
    for name in order:
        metrics = grp["groups"].get(name, {}) if grp else {}
        aucs = jig["subgroups"].get(name, {}) if jig else {}
        count = metrics.get("count", aucs.get("texts"))
        cells = _cell(count) + "".join(_cell(metrics.get(k)) for k in keys)
        cells += "".join(_cell(aucs.get(k)) if name in (jig or {}).get("subgroups", {}) else "<td>background</td>"
                         for k in auc_keys)
        if jig:
            cells += _cell(aucs.get("positives"))
        rows.append(f"<tr class=\"{'plotted' if name in plotted else 'table-only'}\"><td>{e(_name(name))}</td>"
                    f"{cells}</tr>")
    parts = []
    if jig:
        parts.append(f"overall AUC {jig['overall_auc']}, final score {jig['final_score']} (power mean p = "
                     f"{jig['power']:g} of each AUC over subgroups)")
    if grp:
        overall = ", ".join(f"{k.replace('_', ' ')} {grp['overall'][k]}" for k in keys)
        parts.append(f"all {grp['texts']} texts: {overall}")
    note = (f"{len(order)} groups of column {e(str(grp['group_column'] if grp else ''))}, lowest AUC first"
            f"{' (then furthest from the overall value)' if grp else ''}; {e('; '.join(parts))}. Bold: in the plots "
            "above.")
    return (f"<h2>Every subgroup</h2><p>{note}</p><table id=\"subgroups\"><tr><th>group</th>{head}</tr>"
            f"{''.join(rows)}</table>")


def counterfactual_table(report: dict[str, Any]) -> str:
    cf = report.get("counterfactual", {})
    if not cf.get("attributes"):
        return ""
    e = html.escape
    classes = cf["tested_classes"]
    rows = []
    for attribute, v in cf["attributes"].items():
        for group, f in v["groups"].items():
            probs = "".join(f"<td>{f['mean_probability'][c]:.4f}</td><td>{e(str(f['ci95'][c]))}</td>" for c in classes)
            rate = f["label_change_rate"]
            rows.append(f"<tr><td>{e(attribute)}</td><td>{e(group)}</td><td>{f['terms']}</td><td>{f['sentences']}</td>"
                        f"{probs}<td>{'undefined' if rate is None else f'{rate:.4f}'}</td></tr>")
    head = "".join(f"<th>P({e(c)})</th><th>95% interval</th>" for c in classes)
    return ("<h2>Every group of the counterfactual sentences</h2><table id=\"counterfactual-groups\"><tr>"
            f"<th>attribute</th><th>group</th><th>terms</th><th>sentences</th>{head}<th>label change rate</th></tr>"
            f"{''.join(rows)}</table>")


def pair_table(report: dict[str, Any]) -> str:
    cf = report.get("counterfactual", {})
    e = html.escape
    pairs = []
    for attribute in cf.get("attributes", {}).values():
        for p in attribute["pairs"]:
            css = ("significant" if p["significant"] else
                   "statistically-significant" if p.get("statistically_significant") else "ok")
            pairs.append(f"<tr class=\"{css}\"><td>{e(p['attribute'])}</td><td>{e(' vs '.join(p['groups']))}</td>"
                         f"<td>{e(p['class'])}</td><td>{p['mean_difference']:.4f}</td><td>{e(str(p['ci95']))}</td>"
                         f"<td>{'n/a' if p['cohens_dz'] is None else p['cohens_dz']}</td>"
                         f"<td>{e(format_p(p['t_p_holm']))}</td><td>{e(format_p(p['wilcoxon_p_holm']))}</td>"
                         f"<td>{p['templates']}</td><td>{'yes' if p['significant'] else 'no'}</td></tr>")
    if not pairs:
        return ""
    s = cf["summary"]
    min_gap = cf.get("min_gap", report.get("min_gap", 0.0))
    note = (f"Flagged (shaded red): Holm-corrected Wilcoxon p &lt; {report['alpha']:g} <em>and</em> an absolute mean "
            f"difference of at least {min_gap:g} (the practical threshold, <code>--min-gap</code>): "
            f"{s['significant_gaps']} of {s['comparisons']}. "
            f"{s.get('statistically_significant_gaps', 0) - s['significant_gaps']} more pass the p-value alone with a "
            f"smaller gap (not shaded: clear, but too small to matter at this threshold). p-values below "
            f"{P_FLOOR:.0e} are written &lt; {P_FLOOR:.0e}.")
    return (f"<h2>Pairs of groups</h2><p id=\"pairs-note\">{note}</p><table id=\"pairs\"><tr><th>attribute</th>"
            "<th>groups</th><th>class</th><th>mean difference</th><th>95% interval</th><th>d_z</th>"
            "<th>paired t p (Holm)</th><th>Wilcoxon p (Holm)</th><th>templates</th><th>flagged</th></tr>"
            f"{''.join(pairs)}</table>")


def plotted_groups(report: dict[str, Any]) -> set[str]:
    """The labelled-data groups the plots show."""
    out: set[str] = set()
    if report.get("jigsaw") and report["jigsaw"]["subgroups"]:
        out |= set(shown(jigsaw_order(report["jigsaw"]))[0])
    if report.get("groups") and report["groups"]["groups"]:
        out |= set(shown(group_order(report["groups"]))[0])
    return out


def render(report: dict[str, Any], images: dict[str, str]) -> str:
    e = html.escape
    failed = report.get("failed") or []
    status = ("FAILED: " + "; ".join(failed)) if failed else (
        f"passed: {report['fail_on']}" if report.get("fail_on") else "no thresholds set (--fail-on)")
    model = report["model"].get("folder") or report["model"].get("pretrained")
    rows = "".join(f"<tr><td>{e(name)}</td><td>{e(str(value))}</td><td>{e(rests)}</td></tr>"
                   for name, value, rests in _rows(report))
    figs = "".join(f"<figure><img alt=\"{e(name)}\" src=\"data:image/png;base64,{data}\"></figure>"
                   for name, data in images.items())
    notes = "".join(f"<p>{e(part)}: {e(report[part]['skipped'])}</p>" for part in ("counterfactual", "association")
                    if isinstance(report.get(part), dict) and "skipped" in report[part])
    source = report.get("counterfactual", {}).get("source", "")
    grp = report.get("groups")
    if grp:
        source += (f" Labelled data: {grp['data']}, group column {grp['group_column']!r}"
                   + (f" (derived from the text: {grp['layout']} layout)" if grp.get("layout") else "") + ".")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thrifty audit: {e(Path(str(model)).name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}} td,th{{padding:.3em .6em;border-bottom:1px solid #ddd;
text-align:left}} tr.significant td{{background:#fde2e1}} #status{{font-size:1.3em;font-weight:bold}}
tr.plotted td:first-child{{font-weight:bold}} td.na{{color:#888}} figure{{margin:1em 0}}
img{{max-width:100%;height:auto}}</style></head>
<body><h1>thrifty audit</h1>
<p id="status" class="{'failed' if failed else 'ok'}">{e(status)}</p>
<p>{e(str(model))}. {e(source)}</p>{notes}
<table id="summary"><tr><th>figure</th><th>value</th><th>rests on</th></tr>{rows}</table>
{figs}
{subgroup_table(report, plotted_groups(report))}
{counterfactual_table(report)}
{pair_table(report)}
</body></html>
"""


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(render(report, plots(report)), encoding="utf-8")
