"""`thrifty monitor MODEL_DIR [--db URL] [--since 7d]`: recent traffic from the prediction log against the data the
model was trained and validated on; a JSON report, an HTML report with plots, and exit code 1 when drift is flagged.

The reference is the run's own data, rebuilt from its config.yaml (the training texts for inputs, the model's
predictions on the validation split for label shares and accuracy), or `--reference FILE` for a model folder
that left its run behind. Recent traffic is the log's predictions since `--since` (a date, or a span such as
24h or 7d; default: all), at most `--max-texts` of them for the text checks (the newest). With
`serve.log_text: hash` the log holds no texts: the text checks are skipped and the report says so; label shares
and accuracy still run. Accuracy is judged only from `--min-feedback` feedback rows (default 30); a check that
cannot judge says how many rows it has, and gives no verdict: not "ok", not flagged (console, report.json and
report.html alike). The statistics and their thresholds are in drift.py.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from thrifty.errors import ConfigError
from thrifty.monitoring import drift

SPAN = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")


def parse_since(value: Optional[str], now: Optional[datetime] = None) -> Optional[datetime]:
    """'24h', '7d', '2w', '30m', or an ISO date/time (UTC unless it says otherwise) -> a UTC datetime."""
    if value is None:
        return None
    now = now or datetime.now(timezone.utc)
    match = SPAN.match(value.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"--since {value!r} is neither a span (30m, 24h, 7d, 2w) nor a date (2026-11-28 or "
                          "2026-11-28T09:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def read_log(url: str, since: Optional[datetime]) -> list[dict[str, Any]]:
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from thrifty.serving.predlog import make_engine, predictions

    engine = make_engine(url)
    query = sa.select(predictions.c.created_at, predictions.c.model_version, predictions.c.text,
                      predictions.c.text_chars, predictions.c.label, predictions.c.true_label)
    if since is not None:
        query = query.where(predictions.c.created_at >= since)
    try:
        with engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(query.order_by(predictions.c.created_at))]
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot read the prediction log at {url.split('@')[-1]}: {str(exc).splitlines()[0]}; "
                          "check --db (the URL thrifty serve logged to)") from None
    finally:
        engine.dispose()
    return rows


def _reference(predictor, reference_file: Optional[str], max_texts: int, seed: int, run: Optional[Path] = None):
    """(training-like texts, validation texts, validation label ids) for the comparison."""
    if reference_file is not None:
        from thrifty.inference.predictor import labelled_texts

        texts, labels, _, _ = labelled_texts(predictor, reference_file)
        return texts, texts, labels
    from thrifty.inference.predictor import run_splits

    train, validation, labels = run_splits(predictor, "labelled reference texts: --reference FILE", run)
    rng = np.random.default_rng(seed)
    if len(train) > max_texts:
        train = [train[i] for i in sorted(rng.choice(len(train), max_texts, replace=False))]
    return train, validation, labels


def _token_stats(predictor, texts: list[str]) -> tuple[list[int], int, int]:
    """Token counts per text (untruncated), and (unknown tokens, all tokens)."""
    tokenizer = predictor.tokenizer
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    unk = tokenizer.unk_token_id
    lengths = [len(x) for x in ids]
    unknown = sum(sum(1 for t in x if t == unk) for x in ids) if unk is not None else 0
    return lengths, unknown, sum(lengths)


def monitor(model_dir: str | Path, *, db: Optional[str] = None, since: Optional[str] = None,
            reference: Optional[str] = None, output: Optional[str | Path] = None, max_texts: int = 2000,
            seed: int = 0, registry: Optional[str] = None, min_feedback: int = drift.MIN_FEEDBACK) -> dict[str, Any]:
    """`model_dir`: a run or model folder, or models:/NAME@ALIAS (models:/NAME/VERSION) from the registry at
    `registry`: that version's model, the log `serve models:/NAME@...` writes by default, and its run's data as the
    reference (the version's thrifty.run_dir, while it exists)."""
    from thrifty.inference.embeddings import predictor_embeddings
    from thrifty.inference.predictor import Predictor
    from thrifty.runs.manifest import model_folder
    from thrifty.serving.predlog import database_url
    from thrifty.serving.server import default_log_path, registry_log_path, shown_url

    started = time.perf_counter()
    if min_feedback < 1:
        raise ConfigError(f"--min-feedback {min_feedback} must be at least 1 (default {drift.MIN_FEEDBACK})")
    run = None
    if str(model_dir).startswith("models:/"):
        from thrifty.registry.store import Registry

        store = Registry(registry)  # one line, exit 2, when the store is away or the name, alias or version is wrong
        registered = store.version_for_uri(str(model_dir))
        folder = store.local_model(registered)
        run_dir = Path(registered.tags.get("thrifty.run_dir") or "")
        run = run_dir if (run_dir / "config.yaml").exists() else None
        default_log = registry_log_path(store.uri, registered.name)
        default_out = default_log.parent / "monitor"
    else:
        folder = model_folder(model_dir)
        default_log, default_out = default_log_path(folder), folder.parent / "monitor"
    url = database_url(db or str(default_log))
    if url.startswith("sqlite") and not Path(url.split("sqlite:///", 1)[-1]).exists():
        raise ConfigError(f"no prediction log at {shown_url(url)}; give the one thrifty serve wrote: --db URL")
    since_at = parse_since(since)
    rows = read_log(url, since_at)
    if not rows:
        raise ConfigError(f"the prediction log at {shown_url(url)} has no predictions"
                          f"{' since ' + since_at.isoformat() if since_at else ''}; serve some traffic first, or "
                          "widen --since")
    predictor = Predictor.load(folder, device="cpu", backend="torch")  # fp32: the reference figures
    if not predictor.traits.predicts_labels:
        raise ConfigError(f"thrifty monitor covers classification models; {folder} is {predictor.task}")
    train_texts, validation_texts, validation_labels = _reference(predictor, reference, max_texts, seed, run)
    recent_texts = [r["text"] for r in rows if r["text"] is not None][-max_texts:]

    checks: dict[str, Any] = {}
    if recent_texts:
        ref_lengths, ref_unknown, ref_tokens = _token_stats(predictor, train_texts)
        now_lengths, now_unknown, now_tokens = _token_stats(predictor, recent_texts)
        checks["lengths"] = drift.length_drift(ref_lengths, now_lengths)
        checks["unknown_tokens"] = drift.unknown_token_drift((ref_unknown, ref_tokens), (now_unknown, now_tokens))
        checks["embeddings"] = drift.embedding_drift(predictor_embeddings(predictor, train_texts),
                                                     predictor_embeddings(predictor, recent_texts), seed)
    else:
        ref_lengths, now_lengths = [], []
        checks["texts"] = {"flagged": False, "note": "the log stores only hashes of texts (serve.log_text: hash): "
                                                     "length, unknown-token and embedding drift were not checked"}
    validation_logits = predictor.logits(validation_texts) if validation_texts else np.zeros((0, 1))
    validation_predicted = [predictor.label_names[i] for i in validation_logits.argmax(1)] if validation_texts else []
    validation_accuracy = (round(float(np.mean(validation_logits.argmax(1) == np.asarray(validation_labels))), 4)
                           if validation_texts else None)
    recent_labels = [r["label"] for r in rows if r["label"] is not None]
    checks["predictions"] = drift.prediction_drift(predictor.label_names, validation_predicted, recent_labels)
    for name, count in (("lengths", len(recent_texts)), ("embeddings", len(recent_texts)),
                        ("predictions", len(recent_labels))):
        if name in checks and count < drift.MIN_TEXTS and not checks[name]["flagged"]:
            checks[name].update(judged=False, note=f"{count} recent text{'' if count == 1 else 's'}, needs "
                                                   f"{drift.MIN_TEXTS}")
    with_feedback = [r for r in rows if r["true_label"] is not None]
    checks["accuracy"] = drift.accuracy_over_time(
        [r["created_at"].strftime("%Y-%m-%d") for r in with_feedback],
        [r["label"] == r["true_label"] for r in with_feedback], validation_accuracy, min_feedback)

    flagged = sorted(name for name, check in checks.items() if check.get("flagged"))
    out = Path(output) if output else default_out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": str(model_dir) if str(model_dir).startswith("models:/") else str(folder),
              "model_folder": str(folder), "database": shown_url(url), "since": since_at.isoformat() if since_at else None,
              "predictions": len(rows), "texts_checked": len(recent_texts),
              "first": rows[0]["created_at"].isoformat(), "last": rows[-1]["created_at"].isoformat(),
              "model_versions": sorted({r["model_version"] for r in rows}),
              "reference": reference or "the run's training texts and validation split",
              "reference_texts": len(train_texts), "drift": bool(flagged), "flagged": flagged,
              "not_judged": [name for name, check in checks.items() if not check.get("judged", True)],
              "min_feedback": min_feedback, "checks": checks, "seconds": round(time.perf_counter() - started, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    plots = _plots(ref_lengths, now_lengths, checks)
    (out / "report.html").write_text(_html(report, plots), encoding="utf-8")
    report["output_dir"] = str(out)
    return report


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(ref_lengths: list[int], now_lengths: list[int], checks: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    if ref_lengths and now_lengths:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        top = int(np.percentile(ref_lengths + now_lengths, 99)) + 1
        bins = np.linspace(0, max(top, 2), 30)
        ax.hist(ref_lengths, bins=bins, alpha=0.6, density=True, label="training")
        ax.hist(now_lengths, bins=bins, alpha=0.6, density=True, label="recent")
        ax.set_xlabel("tokens per text")
        ax.set_ylabel("share")
        ax.legend()
        ax.set_title(f"Lengths (KS D {checks['lengths']['ks_statistic']})")
        fig.tight_layout()
        plots["lengths"] = _png(fig)
        plt.close(fig)
    shares = checks["predictions"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(shares["labels"]) + 2), 3.4))
    x = np.arange(len(shares["labels"]))
    ax.bar(x - 0.2, shares["reference_shares"], width=0.4, label="validation")
    ax.bar(x + 0.2, shares["recent_shares"], width=0.4, label="recent")
    ax.set_xticks(x, labels=shares["labels"], rotation=90 if len(x) > 6 else 0, fontsize=8)
    ax.set_ylabel("share of predictions")
    ax.set_title(f"Predicted labels (total variation {shares['total_variation']})")
    ax.legend()
    fig.tight_layout()
    plots["predictions"] = _png(fig)
    plt.close(fig)
    accuracy = checks["accuracy"]
    periods = [p for p in accuracy["periods"] if p["accuracy"] is not None]  # those with min_feedback rows
    if periods:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        xs = np.arange(len(periods))
        ys = [p["accuracy"] for p in periods]
        errors = [[p["accuracy"] - p["ci95"][0] for p in periods], [p["ci95"][1] - p["accuracy"] for p in periods]]
        ax.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=4, label="recent (95% interval)")
        if accuracy["validation_accuracy"] is not None:
            ax.axhline(accuracy["validation_accuracy"], color="grey", linestyle="--", label="validation")
        ax.set_xticks(xs, labels=[f"{p['period']}\n({p['feedback']})" for p in periods], fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy on feedback")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(f"Accuracy over time (days with >= {accuracy['min_feedback']} feedback rows)")
        fig.tight_layout()
        plots["accuracy"] = _png(fig)
        plt.close(fig)
    return plots


def verdict(check: dict[str, Any]) -> str:
    """FLAGGED, ok, or "not judged" (too few recent texts or feedback rows: no verdict either way)."""
    if check.get("flagged"):
        return "FLAGGED"
    return "ok" if check.get("judged", True) else "not judged"


def status_line(report: dict[str, Any]) -> str:
    """The report's verdict in one line, naming the checks that could not judge and why."""
    status = "drift flagged: " + ", ".join(report["flagged"]) if report["drift"] else "no drift flagged"
    unjudged = [f"{name} ({report['checks'][name].get('note', 'too few rows')})" for name in report.get("not_judged", [])]
    return status + (f"; not judged: {', '.join(unjudged)}" if unjudged else "")


def check_figures(name: str, check: dict[str, Any]) -> str:
    """The figures of a check for the console: its statistic, and for accuracy the feedback rows it rests on."""
    if name == "accuracy":
        if not check.get("judged", True):
            return f"{check['note']} to report accuracy (--min-feedback)"
        figures = f"accuracy {check['accuracy']}, ci95 {check['ci95']} on {drift.feedback_rows(check['feedback'])}"
        if check.get("validation_accuracy") is not None:
            figures += f" (validation {check['validation_accuracy']})"
        return figures
    shown = {k: v for k, v in check.items() if k in ("ks_statistic", "recent_rate", "roc_auc", "total_variation",
                                                      "note") and v is not None}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def console_lines(report: dict[str, Any]) -> list[str]:
    """What `thrifty monitor` prints: one line per check, then the verdict."""
    lines = [f"{report['predictions']} predictions ({report['first'][:19]} to {report['last'][:19]}) against "
             f"{report['reference']}:"]
    for name, check in report["checks"].items():
        lines.append(f"  {name:<15} {verdict(check):<10} {check_figures(name, check)}".rstrip())
    lines.append(f"{status_line(report)}; wrote {report['output_dir']}/report.json and report.html")
    return lines


def _html(report: dict[str, Any], plots: dict[str, str]) -> str:
    e = html.escape
    status = status_line(report)
    rows = []
    for name, check in report["checks"].items():
        figures = ", ".join(f"{k} {v}" for k, v in check.items()
                            if k not in ("flagged", "threshold", "labels", "reference_shares", "recent_shares",
                                         "periods", "judged") and v is not None)
        result = verdict(check)
        css = {"FLAGGED": "flagged", "ok": "ok", "not judged": "unjudged"}[result]
        rows.append(f"<tr class=\"{css}\"><td>{e(name)}</td><td>{e(result)}</td><td>{e(figures)}</td>"
                    f"<td>{e(str(check.get('threshold', '')))}</td></tr>")
    images = "".join(f"<figure><img alt=\"{e(name)}\" src=\"data:image/png;base64,{data}\"></figure>"
                     for name, data in plots.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thrifty monitor: {e(report['model'] if report['model'].startswith('models:/')
                                                  else Path(report['model']).parent.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} td,th{{padding:.3em .6em;border-bottom:1px solid #ddd;
text-align:left}} tr.flagged td{{background:#fde2e1}} tr.unjudged td{{color:#666}}
#status{{font-size:1.3em;font-weight:bold}}
img{{max-width:100%}}</style></head>
<body><h1>thrifty monitor</h1>
<p id="status" class="{'flagged' if report['drift'] else 'ok'}">{e(status)}</p>
<p>{report['predictions']} predictions from {e(report['first'])} to {e(report['last'])} (model versions
{e(', '.join(report['model_versions']))}) in {e(report['database'])}, against {e(report['reference'])}.</p>
<table id="checks"><tr><th>check</th><th>result</th><th>figures</th><th>flagged when</th></tr>{''.join(rows)}</table>
{images}
</body></html>
"""
