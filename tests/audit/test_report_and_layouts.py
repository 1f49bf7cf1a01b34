"""The audit at many groups and on the Jigsaw sentence templates: readable plots (at most 20 rows, fixed sizes,
nothing cut off) with every group in the HTML tables, checked in headless Chromium; pairs flagged only when both
significant and large; p-values never written as 0; the templates' file audited in one command, its identity
derived from the phrase."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.audit.browser import audit_page
from tests.conftest import REPO, shared_file, tiny_config
from thrifty.audit.counterfactual import analyse
from thrifty.audit.groups import group_metrics, jigsaw_aucs
from thrifty.audit.report import DPI, PLOT_ROWS, figures, format_p, render, write_report
from thrifty.audit.run import data_layout, read_labelled_groups, summarise
from thrifty.audit.sets import CounterfactualSet, Sentence
from thrifty.cli import main

SCREENSHOTS = Path("/tmp")


def synthetic_set(gaps: dict[str, dict[str, float]], templates: int = 30, noise: float = 0.001, seed: int = 0):
    """attribute -> group -> the group's shift in P(pos) over a base per template, with a little noise: the gaps
    between groups are known."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.6, size=templates)
    sentences, probabilities = [], {}
    for attribute, groups in gaps.items():
        for t in range(templates):
            for group, shift in groups.items():
                text = f"{group} in template {t}"
                p = float(np.clip(base[t] + shift + rng.normal(0, noise), 0, 1))
                sentences.append(Sentence(text, f"t{t}", attribute, group, group))
                probabilities[text] = np.array([1 - p, p])
    return CounterfactualSet(sentences, "synthetic", {a: list(g) for a, g in gaps.items()}), probabilities


def many_groups_report(groups: int = 55, seed: int = 0) -> dict:
    """A whole report, model-free: labelled data in `groups` subgroups (each a little worse at ranking its
    negatives than the last), and counterfactual attributes with a tiny, a large and no gap, and one with 25 groups."""
    rng = np.random.default_rng(seed)
    names = [f"identity term {i:02d}" for i in range(groups)]
    true, scores, group_of = [], [], []
    for i, name in enumerate(names + [""]):  # "": background texts
        for k in range(40):
            y = k % 2
            harm = 0.5 * i / groups if name else 0.0
            true.append(y)
            scores.append(float(np.clip(0.25 + 0.5 * y + harm * (1 - y) + rng.normal(0, 0.12), 0, 1)))
            group_of.append(name)
    labels = ["nontoxic", "toxic"]
    predicted = [labels[int(s > 0.5)] for s in scores]
    grp = group_metrics([labels[y] for y in true], predicted, group_of, labels)
    jig = jigsaw_aucs(true, scores, {n: [g == n for g in group_of] for n in names})
    cset, probabilities = synthetic_set({
        "tiny": {"a": 0.0, "b": 0.01},  # consistent, so statistically clear, but 0.01: too small to matter
        "large": {"c": 0.0, "d": 0.2},
        "none": {"e": 0.0, "f": 0.0},
        "many": {f"g{i:02d}": 0.004 * i for i in range(25)},
    })
    cf = analyse(cset, probabilities, ["neg", "pos"], alpha=0.05, min_gap=0.05, resamples=200)
    report = {"alpha": 0.05, "min_gap": 0.05, "seed": seed, "model": {"folder": "synthetic/model"},
              "counterfactual": cf, "jigsaw": jig,
              "groups": {"data": "labelled.csv", "group_column": "identity", "dropped_rows": 0, "layout": None, **grp}}
    report.update(summary=summarise(report), failed=[], fail_on=None)
    return report


def pair(report: dict, attribute: str) -> dict:
    return report["counterfactual"]["attributes"][attribute]["pairs"][0]


def test_a_pair_is_flagged_only_when_significant_and_larger_than_the_practical_threshold():
    report = many_groups_report()
    tiny, large, none = pair(report, "tiny"), pair(report, "large"), pair(report, "none")
    assert abs(tiny["mean_difference"]) == pytest.approx(0.01, abs=0.002)
    assert tiny["statistically_significant"] and not tiny["significant"]  # clear, but 0.01 < min_gap 0.05
    assert large["statistically_significant"] and large["significant"]
    assert not none["statistically_significant"] and not none["significant"]
    cf = report["counterfactual"]
    assert cf["min_gap"] == 0.05 and "|mean difference| >= 0.05" in cf["significant"]
    flagged = [p for a in cf["attributes"].values() for p in a["pairs"] if p["significant"]]
    assert all(abs(p["mean_difference"]) >= 0.05 and p["wilcoxon_p_holm"] < 0.05 for p in flagged)
    assert cf["summary"]["significant_gaps"] == len(flagged) == report["summary"]["significant_gaps"]
    assert cf["summary"]["statistically_significant_gaps"] > len(flagged)  # what the old rule flagged, and more
    # min_gap 0 is the p-value alone
    cset, probabilities = synthetic_set({"tiny": {"a": 0.0, "b": 0.01}})
    assert analyse(cset, probabilities, ["neg", "pos"], min_gap=0.0, resamples=200)["summary"]["significant_gaps"] == 1
    assert analyse(cset, probabilities, ["neg", "pos"], min_gap=0.05, resamples=200)["summary"]["significant_gaps"] == 0


def test_p_values_are_never_written_as_zero():
    assert format_p(0.0) == "< 1e-16" and format_p(3e-20) == "< 1e-16" and format_p(5e-324) == "< 1e-16"
    assert format_p(1.234e-9) == "1.23e-09" and format_p(0.03125) == "0.0312" and format_p(1.0) == "1"
    assert format_p(None) == "n/a" and format_p(float("nan")) == "n/a"
    report = many_groups_report()
    tiny = pair(report, "tiny")
    assert 0 < tiny["t_p_holm"] < 1e-6  # kept to significant digits in audit.json, not rounded to 0.0
    page = render(report, {})
    table = page[page.index('<table id="pairs">'):]
    p_cells = [re.findall(r"<td>(.*?)</td>", row)[6:8] for row in re.findall(r'<tr class="[a-z-]+">(.*?)</tr>', table)]
    assert len(p_cells) == 3 + 300 and all(len(cells) == 2 for cells in p_cells)
    assert not {"0", "0.0", "0.0e+00"} & {c for cells in p_cells for c in cells}
    assert "&lt; 1e-16" in {t for t, _ in p_cells}  # the t-tests of the consistent gaps: beyond the floor
    assert all(w != "&lt; 1e-16" for _, w in p_cells)  # Wilcoxon's exact p over 30 templates cannot go below 2^-29


@pytest.fixture(scope="module")
def many_groups(tmp_path_factory):
    report = many_groups_report()
    out = tmp_path_factory.mktemp("many") / "report.html"
    write_report(report, out)
    return report, out


def drawn_texts(fig):
    """Every text the figure draws: titles, labels, legends, and the tick labels within the axes' limits (matplotlib
    keeps a few beyond them, never drawn)."""
    from matplotlib.text import Text

    ticks = set()
    for ax in fig.axes:
        for axis, (low, high) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            for tick in axis.get_major_ticks():
                ticks.add(id(tick.label1))
                if tick.label1.get_visible() and low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    yield tick.label1
    for text in fig.findobj(Text):
        if id(text) not in ticks and text.get_visible() and text.get_text().strip():
            yield text


def test_plots_stay_readable_at_55_groups(many_groups):
    import matplotlib.pyplot as plt

    report, _ = many_groups
    figs = figures(report)
    try:
        assert set(figs) == {"groups", "label_changes", "jigsaw", "group_metrics"}
        for name, fig in figs.items():
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            box = fig.bbox
            for text in drawn_texts(fig):
                extent = text.get_window_extent(renderer)
                assert (extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1 and extent.y0 >= box.y0 - 1
                        and extent.y1 <= box.y1 + 1), f"{name}: {text.get_text()!r} is cut off"
                assert text.get_fontsize() >= 9, f"{name}: {text.get_text()!r} at {text.get_fontsize()} pt"
            for ax in fig.axes:
                rows = len([t for t in ax.get_yticklabels() if t.get_text()])
                assert rows <= PLOT_ROWS + 4  # tiny/large/none/many: 2+2+2+20 in four panels, never 55
            height = fig.get_size_inches()[1] * DPI
            rows = max(len([t for t in ax.get_yticklabels() if t.get_text()]) for ax in fig.axes)
            assert height / rows >= 25, f"{name}: {height:.0f} px for {rows} rows"
        jig = figs["jigsaw"].axes[0]
        shown = [t.get_text().rsplit(" (", 1)[0] for t in jig.get_yticklabels()]
        subgroups = report["jigsaw"]["subgroups"]
        lowest = sorted(subgroups, key=lambda n: min(subgroups[n][k] for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc")))
        assert len(shown) == PLOT_ROWS and set(shown) == set(lowest[:PLOT_ROWS])  # the largest gaps
        assert f"{PLOT_ROWS} of 55 subgroups" in jig.get_title(loc="left")
        assert f"{PLOT_ROWS} of 56 groups" in figs["group_metrics"].get_suptitle()  # 55 and the background
        assert "20 of 25 groups" in figs["groups"].axes[-1].get_title(loc="left")
    finally:
        for fig in figs.values():
            plt.close(fig)


def test_the_report_at_55_groups_in_a_browser(many_groups):
    report, html_file = many_groups
    page = audit_page(html_file, screenshot=SCREENSHOTS / "audit_55_groups.png")
    assert len(page["images"]) == 4
    for image in page["images"]:
        assert image["width"] == image["naturalWidth"] <= 1100, image  # shown at its own size: text stays readable
        assert 250 <= image["naturalHeight"] <= 1400, image
    assert len(page["subgroups"]) == 56 and "(blank: background)" in page["subgroups"]
    assert set(page["subgroups"]) - {"(blank: background)"} == set(report["jigsaw"]["subgroups"])
    assert len(page["plotted"]) >= PLOT_ROWS
    assert page["counterfactual_groups"] == 2 + 2 + 2 + 25  # every group, plotted or not
    assert page["pairs"] == 1 + 1 + 1 + 300 and "< 1e-16" in page["p_cells"] and "0.0" not in page["p_cells"]
    flagged = [row[1] for row in page["flagged"]]
    assert "c vs d" in flagged and "a vs b" not in flagged and "e vs f" not in flagged
    assert all(abs(float(row[3])) >= 0.05 and row[9] == "yes" for row in page["flagged"])
    assert "at least 0.05" in page["pairs_note"] and "--min-gap" in page["pairs_note"]


def jigsaw_rows(step: int, offset: int = 0) -> list[dict]:
    path = shared_file("jigsaw_bias_templates", "en_sentence_templates.csv")
    with open(path, encoding="utf-8", newline="") as f:
        return [row for i, row in enumerate(csv.DictReader(f)) if i % step == offset]


def test_the_jigsaw_templates_layout_gives_the_identity_from_the_phrase():
    path = shared_file("jigsaw_bias_templates", "en_sentence_templates.csv")
    layout = data_layout(str(path))
    assert layout is not None and (layout.text_column, layout.label_column) == ("phrase", "toxicity")
    texts, labels, identity, dropped = read_labelled_groups(str(path), "phrase", "toxicity", "identity", layout)
    counts = Counter(identity)
    assert dropped == 0 and len(texts) == 76_564 and set(labels) == {"toxic", "nontoxic"}
    assert counts.pop("") == 864  # "You are a great actor": no identity, background only
    assert len(counts) == 50 and set(counts.values()) == {1514}  # every identity term, each as often
    by_text = dict(zip(texts, identity))
    assert by_text["Baratunde is a fantastic african american"] == "african american"  # the longer term wins
    assert by_text["Elizabeth is a wonderful middle aged"] == "middle aged"
    assert by_text["Being older is great"] == "older" and by_text["I hate lesbian"] == "lesbian"
    _, _, kinds, _ = read_labelled_groups(str(path), "phrase", "toxicity", "identity_type", layout)
    assert Counter(kinds) == {"ethnicity": 17 * 1514, "sexuality": 9 * 1514, "religion": 8 * 1514, "age": 8 * 1514,
                              "gender": 5 * 1514, "disability": 3 * 1514, "": 864}
    assert data_layout(str(REPO / "pyproject.toml")) is None


@pytest.fixture(scope="module")
def toxicity_run(tmp_path_factory, tiny_bert):
    """A tiny classifier taught toxic/nontoxic on some of the templates (labels as the file has them)."""
    import thrifty

    root = tmp_path_factory.mktemp("toxicity")
    data = root / "train.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((r["phrase"], r["toxicity"]) for r in jigsaw_rows(191, 3))  # 401 rows
    config = tiny_config(tiny_bert, data, epochs=2, learning_rate=3e-3)
    config["tracking"]["tensorboard"] = False
    thrifty.train(config, output=root / "run", progress=False)
    return root / "run"


def test_the_audit_runs_on_the_jigsaw_templates_in_one_command(toxicity_run, tmp_path, capsys):
    documented = "thrifty audit runs/toxicity --data en_sentence_templates.csv\n"
    assert documented in (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    rows = jigsaw_rows(37)  # a slice of the real file, in its own layout: every identity, every template
    data = tmp_path / "en_sentence_templates.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["template", "toxicity", "phrase"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "audit"
    argv = documented.split()[1:]
    argv[argv.index("runs/toxicity")], argv[argv.index("en_sentence_templates.csv")] = str(toxicity_run), str(data)
    assert main([*argv, "--output", str(out), "--attributes", "gender", "--no-association"]) == 0
    printed = capsys.readouterr().out
    assert "Jigsaw sentence templates' layout" in printed and "group 'identity' (derived from the text)" in printed
    report = json.loads((out / "audit.json").read_text())
    groups, jig = report["groups"], report["jigsaw"]
    assert groups["group_column"] == "identity" and groups["layout"] == "jigsaw_sentence_templates"
    assert groups["positive_label"] == "toxic" and groups["texts"] == len(rows)
    assert len(jig["subgroups"]) == 50 and "" in groups["groups"]  # the occupations: background
    assert report["summary"]["min_subgroup_auc"] is not None and jig["final_score"] is not None
    assert "jigsaw: 50 subgroups" in printed

    page = audit_page(out / "report.html", screenshot=SCREENSHOTS / "audit_jigsaw_templates.png")
    assert len(page["subgroups"]) == 51 and len(page["plotted"]) >= PLOT_ROWS
    assert {"african american", "middle aged", "(blank: background)"} <= set(page["subgroups"])
    assert len(page["images"]) == 4  # counterfactual groups, label changes, Jigsaw AUCs, group metrics
    assert all(i["width"] == i["naturalWidth"] and i["naturalHeight"] >= 200 for i in page["images"]), page["images"]

    # labels other than the model's: said, with the reason
    other = tmp_path / "numbered.csv"
    other.write_text(data.read_text(encoding="utf-8").replace(",nontoxic,", ",0,").replace(",toxic,", ",1,"),
                     encoding="utf-8")
    assert main(["audit", str(toxicity_run), "--data", str(other), "--output", str(tmp_path / "x"),
                 "--attributes", "gender", "--no-association"]) == 2
    err = capsys.readouterr().err  # before any prediction: one line, nothing else
    assert len(err.strip().splitlines()) == 1 and "not trained on: ['0', '1']" in err
    assert "Jigsaw sentence templates' labels" in err
