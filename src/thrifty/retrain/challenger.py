"""`thrifty retrain`: champion/challenger retraining of a registered model (config section `retrain:`).

One retrain, in order:

1. a lock named `retrain:NAME` in the prediction log's database (serving/locks.py): a second retrain of the same
   model waits (`--wait`) or exits 0 saying who holds it;
2. new labelled data: the feedback in the prediction log (texts with a true label) given since the champion's
   cutoff (`thrifty.retrain.feedback_until` on its version; all feedback for a model never retrained; with
   `retrain.feedback_since: last_retrain`, since the latest retrain whatever its outcome), plus
   `retrain.new_data` files. Fewer than `retrain.min_new_examples`: "nothing to do", exit 0, nothing trained;
3. a held-out slice of it (`retrain.holdout_fraction`, stratified, seeded) that neither model trains on, and a fixed
   reference set of the original distribution (`retrain.reference`, else the one earlier retrains fixed, else the
   champion's own validation split, saved so that later retrains use the same rows);
4. the challenger: the champion's recipe (its run's config.yaml; the YAML's and command line's keys on top),
   warm-started from the champion, trained on the new data's other part mixed with a replay sample of the champion's
   training data (`retrain.replay_ratio` replay texts per new text, so it does not forget), within the config's budget;
5. both models predict the held-out slice and the reference set; the challenger is promoted only when it is better on
   the slice by `retrain.margin` (accuracy) with McNemar's exact test (one-sided) below `retrain.significance`, and not
   worse on the reference set by more than `retrain.tolerance` with the same test saying the loss is not noise;
6. the challenger is registered either way (alias `challenger`, its figures and the decision as version tags) and, if
   it won, made the champion (`by: thrifty retrain`, the figures as the reason). A crash before this step leaves the
   registry as it was; registration and the alias move are each consistent on their own (registry/store.py).

`retrain.json` in the retrain's folder holds the data counts, both models' figures, the test and the decision.
"""

from __future__ import annotations

import csv
import json
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from thrifty.errors import ConfigError, DataError

LOCK_PREFIX = "retrain:"


def mcnemar_exact(champion_right: Sequence[bool], challenger_right: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test on paired predictions: b = texts only the champion gets right, c = only the challenger;
    one-sided (the question is whether the challenger is better): P(X >= c) for X ~ Binomial(b + c, 1/2)."""
    from scipy.stats import binomtest

    b = sum(1 for x, y in zip(champion_right, challenger_right) if x and not y)
    c = sum(1 for x, y in zip(champion_right, challenger_right) if y and not x)
    p = binomtest(c, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    worse = binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    return {"only_champion_right": b, "only_challenger_right": c, "p_value": float(p), "p_value_worse": float(worse)}


def decide(new_slice: dict[str, Any], reference: dict[str, Any], settings) -> dict[str, Any]:
    """Promote or not, with every reason; `new_slice` and `reference` hold both accuracies (and the test)."""
    gain = new_slice["challenger_accuracy"] - new_slice["champion_accuracy"]
    loss = reference["champion_accuracy"] - reference["challenger_accuracy"]
    reasons = []
    if gain < settings.margin:
        reasons.append(f"on the new slice the challenger gains {gain:+.4f} accuracy, under the margin {settings.margin}")
    if new_slice["test"]["p_value"] >= settings.significance:
        reasons.append(f"McNemar's p = {new_slice['test']['p_value']:.4g} on the new slice, not below "
                       f"{settings.significance}")
    worse_p = reference.get("test", {}).get("p_value_worse", 0.0)
    if loss > settings.tolerance and worse_p < settings.significance:
        reasons.append(f"on the reference set it loses {loss:.4f} accuracy, more than the tolerance {settings.tolerance}, "
                       f"and McNemar's p = {worse_p:.3g} says the loss is not noise")
    promote = not reasons
    summary = (f"new slice {new_slice['champion_accuracy']:.4f} -> {new_slice['challenger_accuracy']:.4f} "
               f"(p = {new_slice['test']['p_value']:.3g}), reference {reference['champion_accuracy']:.4f} -> "
               f"{reference['challenger_accuracy']:.4f}")
    return {"promote": promote, "reasons": reasons or [f"better on the new slice and within tolerance: {summary}"],
            "summary": summary, "gain": round(gain, 4), "reference_loss": round(loss, 4)}


def _write_csv(path: Path, texts: Sequence[str], labels: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))


def _read_feedback(engine, since: Optional[datetime]) -> tuple[list[str], list[str], Optional[datetime], int]:
    """(texts, true labels, the latest feedback time, rows skipped for having no stored text)."""
    import sqlalchemy as sa

    from thrifty.serving.predlog import as_utc, predictions

    query = sa.select(predictions.c.text, predictions.c.true_label, predictions.c.feedback_at) \
        .where(predictions.c.true_label.is_not(None)).order_by(predictions.c.feedback_at)
    if since is not None:
        query = query.where(predictions.c.feedback_at > since)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    kept = [(r.text, r.true_label) for r in rows if r.text]
    latest = max((r.feedback_at for r in rows), default=None)
    if latest is not None:
        latest = as_utc(latest)
    return [t for t, _ in kept], [y for _, y in kept], latest, len(rows) - len(kept)


def _split_holdout(texts: list[str], labels: list[str], fraction: float, seed: int):
    """Stratified and seeded (data.prepare.stratified_pick, as a validation split is carved): `fraction` of each
    label's rows held out, at least one where a label has two or more rows. ((held texts, labels), (rest ...))."""
    from thrifty.data.prepare import stratified_pick

    held = set(stratified_pick(labels, fraction, None, seed).tolist())
    pick = lambda keep: ([t for i, t in enumerate(texts) if (i in held) == keep],  # noqa: E731
                         [y for i, y in enumerate(labels) if (i in held) == keep])
    return pick(True), pick(False)


def _labels_right(predictor, texts: list[str], labels: list[str]) -> list[bool]:
    answers = predictor.predict(texts)
    return [a["label"] == y for a, y in zip(answers, labels)]


def retrain(config_path: Optional[str] = None, *, overrides: Optional[list[str]] = None,
            output: Optional[str | Path] = None, wait_seconds: float = 0.0, progress: bool = True,
            log=print) -> dict[str, Any]:
    """One champion/challenger round; returns the report (also written to OUTPUT/retrain.json when it trained)."""
    from thrifty.config import load_config
    from thrifty.registry.store import CHAMPION, Registry
    from thrifty.serving.locks import DatabaseLock
    from thrifty.serving.predlog import database_url, make_engine
    from thrifty.serving.server import prepare_database, registry_log_path

    config = load_config(config_path, overrides)  # every key checked, retrain: included
    settings = config.retrain
    if not settings.model:
        raise ConfigError("retrain.model is not set: name the registered model to retrain, e.g. --retrain.model banking")
    registry = Registry(settings.registry)
    name = settings.model
    champion = registry.resolve(name, CHAMPION)
    db_url = database_url(settings.db or str(registry_log_path(registry.uri, name)))
    prepare_database(db_url)  # reachable, and migrated (the lock table)
    engine = make_engine(db_url)
    lock = DatabaseLock(engine, LOCK_PREFIX + name)
    if not lock.acquire(wait_seconds):
        held = lock.current() or {}
        log(f"thrifty retrain: another retrain of {name} is running ({held.get('holder', '?')}, since "
            f"{str(held.get('acquired_at', '?'))[:19]}); nothing done")
        return {"status": "locked", "model": name, "holder": held.get("holder")}
    try:
        return _retrain_locked(config, config_path, overrides, settings, registry, champion, engine, output,
                               progress, log)
    finally:
        lock.release()
        engine.dispose()


def _retrain_locked(config, config_path, overrides, settings, registry, champion, engine, output, progress,
                    log) -> dict[str, Any]:
    from thrifty.config import apply_overrides, config_from_dict, load_yaml
    from thrifty.inference.predictor import Predictor, labelled_texts, run_data
    from thrifty.registry.store import CHALLENGER
    from thrifty.serving.predlog import now_utc
    from thrifty.training.recipe import train

    name = champion.name
    started = time.perf_counter()
    champion_dir = registry.local_model(champion)
    champion_model = Predictor.load(champion_dir)
    labels_known = list(champion_model.label_names)

    # 2. new labelled data
    cutoff_text = champion.tags.get("thrifty.retrain.feedback_until") or None
    if settings.feedback_since == "last_retrain":  # the latest cutoff of any retrain, promoted or not
        cutoff_text = max((c for c in (v.tags.get("thrifty.retrain.feedback_until") for v in registry.versions(name))
                           if c), default=None)
    cutoff = datetime.fromisoformat(cutoff_text) if cutoff_text else None
    texts, labels, latest, no_text = _read_feedback(engine, cutoff)
    counts = {"feedback": len(texts), "feedback_without_text": no_text, "files": 0}
    for path in settings.new_data:
        file_texts, ids, _, _ = labelled_texts(champion_model, path, role="new data")
        texts += file_texts
        labels += [labels_known[i] for i in ids]
        counts["files"] += len(file_texts)
    unknown = sorted({y for y in labels if y not in labels_known})
    if unknown:
        raise DataError(f"new labelled data has labels {name} does not have: {unknown[:5]}; its labels: "
                        f"{labels_known[:10]}")
    if len(texts) < settings.min_new_examples:
        log(f"thrifty retrain: nothing to do: {len(texts)} new labelled texts for {name} (feedback since "
            f"{cutoff_text or 'the start'}: {counts['feedback']}, files: {counts['files']}); retrain.min_new_examples is "
            f"{settings.min_new_examples}")
        return {"status": "nothing to do", "model": name, "new_examples": len(texts), **counts}

    # 3. the held-out slice and the reference set
    (held_texts, held_labels), (new_train_texts, new_train_labels) = _split_holdout(
        texts, labels, settings.holdout_fraction, settings.seed)
    stamp = now_utc().strftime("%Y%m%d-%H%M%S")
    folder = Path(output) if output is not None else Path("runs") / "retrain" / f"{name}-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(champion.tags.get("thrifty.run_dir") or "")
    champion_run = run_dir if (run_dir / "config.yaml").exists() else None
    champion_data = base_config = None
    if champion_run is not None:
        champion_data, base_config = run_data(champion_run)
    reference_file = settings.reference or champion.tags.get("thrifty.retrain.reference") or None
    if reference_file is None:
        if champion_data is None:
            raise ConfigError(f"{name} version {champion.version}'s run folder ({run_dir}) is gone, so its validation "
                              "data is unknown: give a labelled reference set of the original data, retrain.reference")
        reference_file = str((folder / "reference.csv").resolve())
        _write_csv(Path(reference_file), champion_data.validation.texts,
                   [champion_data.label_names[y] for y in champion_data.validation.labels])
    ref_texts, ref_ids, _, _ = labelled_texts(champion_model, reference_file, text_column="text", label_column="label",
                                              role="reference")
    ref_labels = [labels_known[i] for i in ref_ids]

    # 4. the challenger's data: new rows and a replay sample of the champion's training rows
    if settings.replay_data:
        replay_texts, replay_ids, _, _ = labelled_texts(champion_model, settings.replay_data, role="replay data")
        replay_pool = list(zip(replay_texts, [labels_known[i] for i in replay_ids]))
    elif champion_data is not None:
        replay_pool = [(t, champion_data.label_names[y]) for t, y in zip(champion_data.train.texts,
                                                                         champion_data.train.labels)]
    else:
        raise ConfigError(f"{name} version {champion.version}'s run folder ({run_dir}) is gone, so its training data "
                          "is unknown: give a file to replay, retrain.replay_data (or retrain.replay_ratio: 0)")
    rng = random.Random(settings.seed)
    n_replay = min(len(replay_pool), int(round(settings.replay_ratio * len(new_train_texts))))
    replay = rng.sample(replay_pool, n_replay) if n_replay else []
    mixed = list(zip(new_train_texts, new_train_labels)) + replay
    rng.shuffle(mixed)
    _write_csv(folder / "train.csv", [t for t, _ in mixed], [y for _, y in mixed])
    _write_csv(folder / "holdout.csv", held_texts, held_labels)

    challenger_config = base_config if base_config is not None else config
    if config_path is not None:  # the YAML's own keys (not its defaults) override the champion's recipe
        challenger_config = config_from_dict(load_yaml(config_path), challenger_config)
    challenger_config = apply_overrides(challenger_config, overrides)
    challenger_config.model.name = str(champion_dir)
    challenger_config.data.train = str((folder / "train.csv").resolve())
    challenger_config.data.validation = None
    challenger_config.data.test = None
    challenger_config.data.format = "csv"
    challenger_config.data.text_column, challenger_config.data.label_column = "text", "label"
    challenger_config.data.labels = labels_known
    challenger_config.data.max_train_examples = challenger_config.data.examples_per_class = None
    log(f"thrifty retrain: {name} champion v{champion.version}; {len(texts)} new labelled texts "
        f"({counts['feedback']} feedback, {counts['files']} from files): {len(new_train_texts)} to train on with "
        f"{len(replay)} replayed, {len(held_texts)} held out; reference set {len(ref_texts)} texts")
    result = train(challenger_config, output=folder / "challenger", progress=progress, overwrite=True)
    challenger_model = Predictor.load(result.run_dir)

    # 5. the comparison on the same texts
    figures = {}
    for key, (eval_texts, eval_labels) in {"new_slice": (held_texts, held_labels),
                                           "reference": (ref_texts, ref_labels)}.items():
        right_a = _labels_right(champion_model, eval_texts, eval_labels)
        right_b = _labels_right(challenger_model, eval_texts, eval_labels)
        figures[key] = {"texts": len(eval_texts), "champion_accuracy": round(sum(right_a) / max(1, len(right_a)), 4),
                        "challenger_accuracy": round(sum(right_b) / max(1, len(right_b)), 4),
                        "test": mcnemar_exact(right_a, right_b)}
    decision = decide(figures["new_slice"], figures["reference"], settings)

    # 6. register, and promote the winner
    version, _ = registry.register(result.run_dir, name, by="thrifty retrain")
    feedback_until = (latest.isoformat() if latest is not None else cutoff_text) or ""
    registry.set_version_tags(name, version.version, {
        "thrifty.retrain.decision": json.dumps({k: decision[k] for k in ("promote", "reasons", "summary")}),
        "thrifty.retrain.reference": reference_file, "thrifty.retrain.feedback_until": feedback_until,
        "thrifty.retrain.champion": str(champion.version), "thrifty.retrain.folder": str(folder.resolve())})
    registry.promote(name, version.version, alias=CHALLENGER, by="thrifty retrain",
                     reason=f"challenger of v{champion.version}: {decision['summary']}")
    if decision["promote"]:
        registry.promote(name, version.version, by="thrifty retrain", reason=decision["summary"],
                         extra={"champion_was": champion.version})
    report = {"status": "promoted" if decision["promote"] else "not promoted", "model": name,
              "champion": champion.version, "challenger": version.version, "decision": decision,
              "figures": figures, "data": {**counts, "new_examples": len(texts), "trained_new": len(new_train_texts),
                                           "replayed": len(replay), "held_out": len(held_texts),
                                           "reference": reference_file, "feedback_since": cutoff_text,
                                           "feedback_until": feedback_until},
              "seconds": round(time.perf_counter() - started, 1), "folder": str(folder)}
    (folder / "retrain.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    verdict = (f"promoted: {name}@champion is now v{version.version}" if decision["promote"]
               else f"not promoted: {'; '.join(decision['reasons'])}; v{version.version} is {name}@challenger")
    log(f"thrifty retrain: {decision['summary']}; {verdict} ({report['seconds']:.0f} s, {folder}/retrain.json)")
    return report
