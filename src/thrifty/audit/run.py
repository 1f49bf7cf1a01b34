"""`thrifty audit`: a bias audit of a fine-tuned classifier, or of a pre-trained encoder before fine-tuning.

One call, in order:
1. the model: a run or model folder (a sentence classifier), or `model=NAME` (a pre-trained encoder: only the
   association tests apply, as it has no labels to predict);
2. counterfactual invariance (audit/counterfactual.py) on thrifty's default templates x terms, the user's
   `templates`/`terms` files, or a corpus in the Equity Evaluation Corpus's layout;
3. with `data` and `group_column`: group metrics (Fairlearn), and for a binary task the Jigsaw AUCs (audit/groups.py);
4. association tests (SEAT) on the encoder's sentence embeddings (audit/association.py);
5. `audit.json` and `report.html` (plots embedded) in the output folder, a flat `summary` of the headline figures,
   and the `fail_on` thresholds checked against it (a CI gate: the command exits 1 when one is exceeded).
"""

from __future__ import annotations

import json
import operator
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from thrifty.config import AUDIT_SUMMARY_KEYS as SUMMARY_KEYS
from thrifty.config import check_fail_on_measurable as check_measurable
from thrifty.config import parse_fail_on
from thrifty.errors import ConfigError, DataError
from thrifty.traits import task_traits

if TYPE_CHECKING:
    from thrifty.audit.layouts import Layout
    from thrifty.inference.predictor import Predictor

COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def check_thresholds(summary: dict[str, Any], rules: list[tuple[str, str, float]]) -> list[str]:
    """The rules the summary breaks, as text. A figure left unmeasured by the data (an AUC with one class in a
    subgroup, a binary metric on a multi-class task) breaks its rule: a gate that cannot see does not pass."""
    broken = []
    for name, op, value in rules:
        if summary.get(name) is None:
            broken.append(f"{name} not measured (see audit.json), so {name}{op}{value:g} cannot be checked")
        elif COMPARE[op](summary[name], value):
            broken.append(f"{name} = {summary[name]:g} {op} {value:g}")
    return broken


def check_inputs(settings) -> None:
    """An audit: section's files, read and checked as the audit will (a typo fails before training, not after)."""
    from thrifty.audit.sets import sentence_set

    sentence_set(settings.corpus, settings.templates, settings.terms, settings.attributes or None)
    if settings.data is not None and not Path(settings.data).expanduser().is_file():
        raise DataError(f"audit.data not found: {settings.data}; give labelled data with a {settings.group_column!r} "
                        "column")


def data_layout(path: str) -> Optional["Layout"]:
    """The known layout of a labelled data file (audit/layouts.py: the Jigsaw sentence templates), from its header;
    None for any other file."""
    from thrifty.audit.layouts import recognise
    from thrifty.data.readers import column_names

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"labelled data not found: {file}; give a CSV, TSV or JSON Lines file with a text, a label and "
                        "a group column")
    columns = column_names(str(file), role="labelled")
    return recognise([str(c) for c in columns])


def read_labelled_groups(path: str, text_column: str, label_column: str, group_column: str,
                         layout: Optional["Layout"] = None) -> tuple[list[str], list[str], list[str], int]:
    """(texts, labels, groups, rows dropped for an empty text or label) of a labelled table, read as every command
    reads one (data.readers.read_table: CSV, TSV, JSON Lines, Parquet, a .txt with a header; the delimiter sniffed).
    In a known `layout` (audit/layouts.py) a group column the file lacks is derived from the texts when the layout
    can (the Jigsaw templates' `identity`, `identity_type`)."""
    from thrifty.data.readers import read_table

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"labelled data not found: {file}; give a CSV, TSV or JSON Lines file with a text, a label and "
                        "a group column")
    table = read_table(str(file), role="labelled", text_column=text_column, label_column=label_column,
                       extra_columns=(group_column,),
                       flags={"text_column": "--text-column", "label_column": "--label-column"})
    if group_column not in table.columns and layout is not None and group_column in layout.derived:
        from thrifty.audit.layouts import derive

        table.columns[group_column] = derive(table.texts, group_column)
    if group_column not in table.columns:
        derivable = f", or one thrifty derives here: {', '.join(layout.derived)}" if layout is not None else ""
        raise DataError(f"{file} has no group column {group_column!r}; its columns: {', '.join(table.column_names)} "
                        f"(choose with --group-column{derivable})")
    rows = [(text, label, (group or "").strip()) for text, label, group
            in zip(table.texts, table.labels or [], table.columns[group_column])]
    kept = [row for row in rows if row[0].strip() and row[1] is not None]
    return ([r[0] for r in kept], [r[1] for r in kept], [r[2] for r in kept], len(rows) - len(kept))


def default_output(model_dir: Optional[str], folder: Optional[Path], name: Optional[str]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if folder is not None:
        run = folder.parent if (folder.parent / "run.json").exists() else None
        if run is not None:
            return run / "audit" / stamp
        return Path("runs") / "audit" / f"{folder.name}-{stamp}"
    return Path("runs") / "audit" / f"{Path(str(name)).name}-{stamp}"


def audit(model_dir: Optional[str] = None, *, model: Optional[str] = None, corpus: Optional[str] = None,
          templates: Optional[str] = None, terms: Optional[str] = None, attributes: Optional[list[str]] = None,
          data: Optional[str] = None, group_column: Optional[str] = None, text_column: Optional[str] = None,
          label_column: Optional[str] = None, positive_label: Optional[str] = None,
          output: Optional[str | Path] = None, fail_on: Optional[str] = None, association: bool = True,
          alpha: float = 0.05, min_gap: float = 0.05, resamples: int = 2000, permutations: int = 10_000,
          seed: int = 0, log=print) -> dict[str, Any]:
    """Run the audit; returns the report (also in OUTPUT/audit.json) with `failed`: the --fail-on rules broken.
    A pair of groups is flagged when its Holm-corrected p is below `alpha` and its gap is at least `min_gap`."""
    from thrifty.audit import association as assoc
    from thrifty.audit import counterfactual
    from thrifty.audit.sets import association_tests, sentence_set
    from thrifty.evaluation.evaluate import softmax

    started = time.perf_counter()
    rules = parse_fail_on(fail_on)  # before any work: a typo costs nothing
    _check_arguments(model_dir, model, corpus, templates, terms, data, group_column, alpha, min_gap)
    layout = data_layout(data) if data is not None else None  # the header only: a known layout needs no group column
    if data is not None and group_column is None:
        group_column = _layout_group_column(layout)
    check_measurable(rules, model_dir is not None, data is not None, association)
    sets = sentence_set(corpus, templates, terms, attributes)  # files checked now

    report: dict[str, Any] = {"alpha": alpha, "min_gap": min_gap, "seed": seed}
    folder = None
    if model_dir is not None:
        folder, predictor, positive_label = _load_classifier(model_dir, layout, positive_label)
        labels = list(predictor.label_names)
        report["model"] = {"folder": str(folder), "labels": labels, "task": predictor.task}
        if data is not None:  # read and checked before any prediction: a bad file costs nothing
            text_column = text_column or (layout.text_column if layout else predictor.data_config.text_column)
            label_column = label_column or (layout.label_column if layout else predictor.data_config.label_column)
            labelled = _read_known_labels(predictor, data, text_column, label_column, group_column, layout)
        log(f"thrifty audit: {folder} ({len(labels)} labels); {sets.source}: {len(sets.texts)} sentences")
        probabilities = softmax(predictor.logits(sets.texts))
        by_text = dict(zip(sets.texts, probabilities))
        report["counterfactual"] = counterfactual.analyse(sets, by_text, labels, positive_label=positive_label,
                                                          alpha=alpha, min_gap=min_gap, resamples=resamples,
                                                          seed=seed)
        if data is not None:
            if layout is not None:
                log(f"thrifty audit: {data} is in the {layout.title}' layout: text {text_column!r}, label "
                    f"{label_column!r}, group {group_column!r}" + (" (derived from the text)"
                                                                   if group_column in layout.derived else ""))
            _group_figures(report, predictor, labelled, positive_label, data, group_column, layout)
        embed = _classifier_embedder(predictor, report) if association else None
    else:
        embed = _pretrained_encoder(report, model, association, log)
    if embed is not None:
        tests, bleached = association_tests()
        report["association"] = assoc.run_tests(tests, bleached, embed, permutations, seed)

    report["summary"] = summarise(report)
    report["failed"] = check_thresholds(report["summary"], rules)
    report["fail_on"] = fail_on
    out = Path(output) if output is not None else default_output(model_dir, folder, model)
    _write_outputs(report, out, started)
    return report


def _check_arguments(model_dir: Optional[str], model: Optional[str], corpus: Optional[str], templates: Optional[str],
                     terms: Optional[str], data: Optional[str], group_column: Optional[str], alpha: float,
                     min_gap: float) -> None:
    """The arguments that cannot go together or are out of range, refused before any file is read."""
    if (model_dir is None) == (model is None):
        raise ConfigError("give a fine-tuned model (thrifty audit RUN_DIR) or a pre-trained one (--model NAME), "
                          "one of the two")
    if corpus and (templates or terms):
        raise ConfigError("--corpus is a ready set of sentences; give it, or --templates/--terms, not both")
    if data is None and group_column is not None:
        raise ConfigError("group metrics need both --data FILE and --group-column COLUMN")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"--alpha {alpha} must be in (0, 1), e.g. 0.05")
    if not 0.0 <= min_gap < 1.0:
        raise ConfigError(f"--min-gap {min_gap} must be in [0, 1): the smallest gap in probability worth flagging, "
                          "e.g. 0.05 (0 flags every statistically significant gap)")


def _layout_group_column(layout: Optional["Layout"]) -> str:
    """--data without --group-column: the group column of the file's known layout, which thrifty derives itself."""
    if layout is None:
        raise ConfigError("group metrics need both --data FILE and --group-column COLUMN (thrifty derives the "
                          "group itself only for the Jigsaw sentence templates' layout: template, toxicity, "
                          "phrase)")
    return layout.group_column


def _load_classifier(model_dir: str, layout: Optional["Layout"],
                     positive_label: Optional[str]) -> tuple[Path, "Predictor", Optional[str]]:
    """(the model folder, its predictor on the CPU, the positive label): a model that predicts labels, checked before
    it is loaded; the positive label is the layout's when none is given and the model has it."""
    from thrifty.inference.predictor import Predictor
    from thrifty.runs.manifest import model_folder, read_manifest

    folder = model_folder(model_dir)
    task = read_manifest(folder).get("task")
    if not task_traits(task).predicts_labels:  # before loading anything
        raise ConfigError(f"thrifty audit covers sentence classification models (and pre-trained encoders with "
                          f"--model NAME); {folder} is {task}")
    predictor = Predictor.load(folder, device="cpu", backend="torch")  # fp32: the reference figures
    labels = list(predictor.label_names)
    if positive_label is None and layout is not None and layout.positive_label in labels:
        positive_label = layout.positive_label  # the Jigsaw templates: the toxic class, whatever its position
    if positive_label is not None and positive_label not in labels:
        raise ConfigError(f"--positive-label {positive_label!r} is not a label of {folder}; its labels: "
                          f"{', '.join(labels[:10])}")
    return folder, predictor, positive_label


def _read_known_labels(predictor: "Predictor", data: str, text_column: str, label_column: str, group_column: str,
                       layout: Optional["Layout"]) -> tuple[list[str], list[str], list[str], int]:
    """read_labelled_groups, refusing labels the model was not trained on."""
    labels = list(predictor.label_names)
    texts, true, group_values, dropped = read_labelled_groups(data, text_column, label_column, group_column, layout)
    unknown = sorted(set(true) - set(labels))
    if unknown:
        hint = (f" (the {layout.title}' labels: audit a model trained with those labels)"
                if layout is not None else "")
        raise DataError(f"{data} has labels {predictor.folder} was not trained on: {unknown[:5]}; it knows "
                        f"{labels[:10]}{hint}")
    return texts, true, group_values, dropped


def _group_figures(report: dict[str, Any], predictor: "Predictor",
                   labelled: tuple[list[str], list[str], list[str], int], positive_label: Optional[str], data: str,
                   group_column: str, layout: Optional["Layout"]) -> None:
    """report["groups"] (Fairlearn's metrics per group of the labelled data) and, for a binary task or a given
    positive label, report["jigsaw"] (the Jigsaw AUCs per subgroup)."""
    from thrifty.audit import groups
    from thrifty.evaluation.evaluate import softmax

    texts, true, group_values, dropped = labelled
    labels = list(predictor.label_names)
    probs = softmax(predictor.logits(texts))
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    report["groups"] = {"data": str(data), "group_column": group_column, "dropped_rows": dropped,
                        "layout": layout.name if layout else None,
                        **groups.group_metrics(true, predicted, group_values, labels, positive_label)}
    if len(labels) == 2 or positive_label is not None:
        positive = positive_label or labels[1]
        names = sorted({g for g in group_values if g and g.lower() not in ("none", "nan", "-")})
        report["jigsaw"] = groups.jigsaw_aucs([int(y == positive) for y in true],
                                              probs[:, labels.index(positive)].tolist(),
                                              {n: [g == n for g in group_values] for n in names})


def _classifier_embedder(predictor: "Predictor", report: dict[str, Any]) -> Optional[Callable[[list[str]], Any]]:
    """The fine-tuned model's sentence embeddings for the association tests; None (said in the report) for a decoder."""
    from thrifty.models.sentence import is_sentence_encoder

    if is_sentence_encoder(predictor.model.config):
        from functools import partial

        from thrifty.inference.embeddings import predictor_embeddings

        return partial(predictor_embeddings, predictor)
    report["association"] = {"skipped": "a decoder's left-to-right states are not sentence embeddings"}
    return None


def _pretrained_encoder(report: dict[str, Any], model: str, association: bool,
                        log: Callable[[str], None]) -> Optional[Callable[[list[str]], Any]]:
    """A pre-trained encoder: no labels to predict, so its embeddings for the association tests only."""
    from thrifty.inference.embeddings import EncoderEmbedder

    report["model"] = {"pretrained": model}
    report["counterfactual"] = {"skipped": "a pre-trained encoder has no labels to predict: fine-tune it, then "
                                           "audit the run"}
    log(f"thrifty audit: pre-trained {model}: association tests only (no labels to predict)")
    return EncoderEmbedder(model) if association else None


def _write_outputs(report: dict[str, Any], out: Path, started: float) -> None:
    """OUT/audit.json and OUT/report.html, with the seconds the audit took; the folder in the report."""
    from thrifty.audit.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "audit.json").write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    write_report(report, out / "report.html")
    report["output_dir"] = str(out)


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, flat (what --fail-on, metrics.json and MLflow read), each None when not measured."""
    summary: dict[str, Any] = {k: None for k in SUMMARY_KEYS}
    cf = report.get("counterfactual", {}).get("summary")
    if cf:
        summary.update({k: cf[k] for k in ("max_gap", "max_label_change_rate", "significant_gaps")})
        summary["counterfactual_sentences"] = cf["sentences"]
    assoc = report.get("association", {}).get("summary")
    if assoc:
        summary.update({k: assoc[k] for k in ("max_abs_effect_size", "significant_associations")})
    grp = report.get("groups")
    if grp:
        summary["accuracy_difference"] = grp["differences"].get("accuracy")
        summary["demographic_parity_difference"] = grp.get("demographic_parity_difference")
        summary["equalized_odds_difference"] = grp.get("equalized_odds_difference")
        summary["labelled_texts"] = grp["texts"]
    jig = report.get("jigsaw")
    if jig:
        subgroups = jig["subgroups"].values()
        summary["min_subgroup_auc"] = jig["min_subgroup_auc"]
        summary["min_bpsn_auc"] = min((g["bpsn_auc"] for g in subgroups if g["bpsn_auc"] is not None), default=None)
        summary["min_bnsp_auc"] = min((g["bnsp_auc"] for g in subgroups if g["bnsp_auc"] is not None), default=None)
        summary["final_score"] = jig["final_score"]
    return summary
