"""`thrifty audit`: the bias audit of a classifier (or of a pre-trained encoder)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Context, Option, command

AUDIT_KEYS = ("templates", "terms", "corpus", "attributes", "data", "group_column", "positive_label", "association",
              "fail_on")


@command("bias audit: counterfactual identity terms, group metrics, association tests (docs/audit.md); exit 1 when "
         "--fail-on trips", config=True, shows_passes=True,
         epilog="audit settings: --audit.KEY VALUE or a --config YAML's audit: section (the options win)")
def audit(
    model_dir: Annotated[Optional[str], Arg("a fine-tuned classifier: run folder or model folder",
                                            metavar="MODEL_DIR")] = None,
    *,
    model: Annotated[Optional[str], Option(words.MODEL + ": a fine-tuned classifier's folder (as MODEL_DIR), or a "
                                           "pre-trained encoder before fine-tuning (association tests only)")] = None,
    config: Annotated[Optional[str], Option("YAML with an audit: section (other sections are ignored)")] = None,
    corpus: Annotated[Optional[str], Option("a ready corpus, CSV in the Equity Evaluation Corpus's layout (Sentence, "
                                            "Template, Person, Gender, Race, Emotion)")] = None,
    templates: Annotated[Optional[str], Option("templates file: one per line, each with {person}")] = None,
    terms: Annotated[Optional[str], Option("terms file: YAML (attribute: {group: [terms]}) or CSV (attribute, group, "
                                           "term)")] = None,
    attributes: Annotated[Optional[str], Option("only these attributes of the terms, comma-separated (e.g. "
                                                "gender,religion)")] = None,
    data: Annotated[Optional[str], Option("labelled data with a group column: group metrics, and Jigsaw AUCs for "
                                          "binary tasks")] = None,
    group_column: Annotated[Optional[str], Option("the column of --data naming each text's group (identity); for the "
                                                  "Jigsaw sentence templates (template, toxicity, phrase) derived: "
                                                  "identity (default) or identity_type")] = None,
    text_column: Annotated[Optional[str], Option(words.DATA_TEXT_COLUMN)] = None,
    label_column: Annotated[Optional[str], Option(words.DATA_LABEL_COLUMN)] = None,
    positive_label: Annotated[Optional[str], Option("the class the binary figures are about (default: the second "
                                                    "label)")] = None,
    fail_on: Annotated[Optional[str], Option('thresholds, e.g. "max_gap>0.05,significant_gaps>0": exit 1 when one is '
                                             'exceeded')] = None,
    no_association: Annotated[bool, Option("skip the association tests (SEAT)")] = False,
    alpha: Annotated[float, Option("significance after Holm's correction")] = 0.05,
    min_gap: Annotated[float, Option("practical threshold: a pair of groups is flagged only when significant and its "
                                     "gap in probability is at least this")] = 0.05,
    seed: Annotated[int, Option("bootstrap and permutation seed")] = 0,
    output: Annotated[Optional[str], Option("the folder for audit.json and report.html (default: RUN_DIR/audit/TIME)",
                                            metavar="FOLDER")] = None,
    ctx: Context,
) -> int:
    from thrifty.audit.run import audit as run_audit
    from thrifty.runs.manifest import is_thrifty_model

    if model is not None and model_dir is None and is_thrifty_model(model):
        model_dir, model = model, None  # --model is the model to use, fine-tuned or not
    given = dict(templates=templates, terms=terms, corpus=corpus, data=data, group_column=group_column,
                 positive_label=positive_label, fail_on=fail_on,
                 attributes=[a.strip() for a in attributes.split(",")] if attributes else None,
                 association=False if no_association else None)
    settings = {k: v for k, v in words.section_settings(config, ctx.overrides, "audit").items() if k in AUDIT_KEYS}
    settings.update({k: v for k, v in given.items() if v is not None})
    report = run_audit(model_dir, model=model, text_column=text_column, label_column=label_column, output=output,
                       alpha=alpha, min_gap=min_gap, seed=seed, **settings)
    for line in summary_lines(report, alpha, min_gap):
        print(line)
    print(f"wrote {report['output_dir']}/audit.json and report.html")
    if report["failed"]:
        print("FAILED: " + "; ".join(report["failed"]))
        return 1
    return 0


def summary_lines(report: dict[str, Any], alpha: float, min_gap: float) -> list[str]:
    """The audit report for a terminal: counterfactual gaps per attribute, group metrics, Jigsaw AUCs, SEAT."""
    from thrifty.audit.report import format_p

    lines = []
    cf = report.get("counterfactual", {})
    if "summary" in cf:
        s = cf["summary"]
        lines.append(f"counterfactual: {s['sentences']} sentences; largest gap {s['max_gap']:.4f} "
                     f"({s['max_gap_attribute']}: {' vs '.join(s['max_gap_between'] or [])}), label changes up to "
                     f"{s['max_label_change_rate']:.4f} ({s['max_label_change_group']}), {s['significant_gaps']} of "
                     f"{s['comparisons']} gaps flagged (Holm, Wilcoxon p < {alpha} and gap >= {min_gap}; "
                     f"{s['statistically_significant_gaps']} by p alone)")
        for name, attribute in cf["attributes"].items():
            top = max(attribute["pairs"], key=lambda p: abs(p["mean_difference"]), default=None)
            lines.append(f"  {name:<20} gap {attribute['max_gap']:.4f}"
                         + (f" (Holm p {format_p(top['wilcoxon_p_holm'])})" if top else "")
                         + f"  flagged {attribute['significant_gaps']:>2}  "
                         f"({attribute['sentences']} sentences, {attribute['templates']} templates)")
    if "groups" in report:
        g = report["groups"]
        figures = {k: g.get(k) for k in ("demographic_parity_difference", "equalized_odds_difference")
                   if g.get(k) is not None}
        lines.append(f"groups ({g['group_column']}, {g['texts']} texts): accuracy difference "
                     f"{g['differences'].get('accuracy')}" + "".join(f", {k} {v}" for k, v in figures.items()))
    if "jigsaw" in report:
        j = report["jigsaw"]
        lines.append(f"jigsaw: {len(j['subgroups'])} subgroups, overall AUC {j['overall_auc']}, worst subgroup AUC "
                     f"{j['min_subgroup_auc']} ({j['worst_subgroup']}), final score {j['final_score']}")
    for name, test in report.get("association", {}).get("tests", {}).items():
        lines.append(f"association {name}: effect size {test['effect_size']:+.3f} ({test['targets'][0]} ~ "
                     f"{test['attributes'][0]}), p = {format_p(test['p_value'])} ({test['sentences']} sentences)")
    return lines
