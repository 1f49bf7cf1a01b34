"""`thrifty retrain`: champion/challenger retraining of a registered model (config section `retrain:`).

One retrain, in order:

1. a lock named `retrain:NAME` in the prediction log's database (serving/locks.py): a second retrain of the same
   model waits (`--wait`) or exits 0 saying who holds it;
2. new labelled data: the feedback in the prediction log (texts with a true label) given since the champion's
   cutoff (`thrifty.retrain.feedback_until` on its version; all feedback for a model never retrained; with
   `retrain.feedback_since: last_retrain`, since the latest retrain whatever its outcome), plus
   `retrain.new_data` files, less any feedback window an earlier round quarantined (below). Fewer than
   `retrain.min_new_examples`: "nothing to do", exit 0, nothing trained;
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

Noisy feedback: the newest window (feedback since the latest retrain of any outcome) is checked against the champion's
answers before training: Cohen's kappa and a one-sided binomial test of the agreement against the rate two unrelated
label sequences with these label shares would reach. When that round's challenger is refused and the agreement is no
better than chance (p >= `retrain.significance`; shuffled or garbage labels) while the champion's answers on the
reference set do carry its labels (the same test, p < `retrain.significance`: a champion that answers one label for
everything proves nothing), the window is quarantined (a version tag
with the evidence) and later rounds leave it out, so that one bad batch does not sink every challenger after it
(`retrain.quarantine_noise: false` turns this off and uses it again). Feedback that is true but on which the champion is
at chance is quarantined only if training on it did not help either.

`retrain.json` in the retrain's folder holds the data counts, both models' figures, the test and the decision.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from thrifty.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from thrifty.config import Config, RetrainConfig
    from thrifty.inference.predictor import Predictor
    from thrifty.registry.store import Registry, Version

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


def agreement_beyond_chance(answers: Sequence[str], given: Sequence[str]) -> dict[str, Any]:
    """How far the given labels agree with a model's answers beyond chance: the agreement, the chance rate from the two
    label shares (sum over labels of answer share x given share, as in Cohen's kappa), kappa, and a one-sided binomial
    test of the agreement against that rate (small p: the labels carry what the model knows)."""
    from scipy.stats import binomtest

    n = len(given)
    agree = sum(1 for a, y in zip(answers, given) if a == y)
    shares_a, shares_y = Counter(answers), Counter(given)
    chance = sum(shares_a[k] * shares_y[k] for k in shares_a) / (n * n) if n else 1.0
    observed = agree / n if n else 0.0
    kappa = (observed - chance) / (1.0 - chance) if chance < 1.0 else 0.0
    p = binomtest(agree, n, chance, alternative="greater").pvalue if n and chance < 1.0 else 1.0
    return {"texts": n, "agreement": round(observed, 4), "chance": round(chance, 4), "kappa": round(kappa, 4),
            "p_value": float(p)}


def quarantined_windows(versions) -> list[dict[str, Any]]:
    """The feedback windows earlier rounds quarantined: {after, until, version, ...} from the versions' tags."""
    windows = []
    for v in versions:
        text = v.tags.get("thrifty.retrain.quarantine")
        if text:
            window = json.loads(text)
            windows.append({**window, "version": v.version,
                            "after_time": datetime.fromisoformat(window["after"]) if window.get("after") else None,
                            "until_time": datetime.fromisoformat(window["until"])})
    return windows


def _in_window(when: datetime, window: dict[str, Any]) -> bool:
    return (window["after_time"] is None or when > window["after_time"]) and when <= window["until_time"]


def decide(new_slice: dict[str, Any], reference: dict[str, Any], settings,
           fairness: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Promote or not, with every reason; `new_slice` and `reference` hold both accuracies (and the test); `fairness`
    both models' largest group gaps when retrain.max_gap_increase is set."""
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
    if fairness is not None and fairness["challenger_max_gap"] > fairness["champion_max_gap"] + settings.max_gap_increase:
        reasons.append(f"its largest group gap ({fairness['attribute']}) is {fairness['challenger_max_gap']:.4f} against "
                       f"the champion's {fairness['champion_max_gap']:.4f}: more than retrain.max_gap_increase "
                       f"{settings.max_gap_increase} worse (thrifty audit)")
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


def _read_feedback(engine, since: Optional[datetime]) -> tuple[list[tuple[str, str, datetime]], int]:
    """([(text, true label, feedback time)] oldest first, rows skipped for having no stored text)."""
    import sqlalchemy as sa

    from thrifty.serving.predlog import as_utc, predictions

    query = sa.select(predictions.c.text, predictions.c.true_label, predictions.c.feedback_at) \
        .where(predictions.c.true_label.is_not(None)).order_by(predictions.c.feedback_at)
    if since is not None:
        query = query.where(predictions.c.feedback_at > since)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    kept = [(r.text, r.true_label, as_utc(r.feedback_at)) for r in rows if r.text]
    return kept, len(rows) - len(kept)


def _split_holdout(texts: list[str], labels: list[str], fraction: float, seed: int):
    """Stratified and seeded (data.prepare.stratified_pick, as a validation split is carved): `fraction` of each
    label's rows held out, at least one where a label has two or more rows. ((held texts, labels), (rest ...))."""
    from thrifty.data.prepare import stratified_pick

    held = set(stratified_pick(labels, fraction, None, seed).tolist())
    pick = lambda keep: ([t for i, t in enumerate(texts) if (i in held) == keep],  # noqa: E731
                         [y for i, y in enumerate(labels) if (i in held) == keep])
    return pick(True), pick(False)


def _answers(predictor, texts: list[str]) -> list[str]:
    return [a["label"] for a in predictor.predict(texts)]


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
        return _retrain_locked(RetrainRound(config, config_path, overrides, settings, registry, champion, engine,
                                            output, progress, log))
    finally:
        lock.release()
        engine.dispose()


@dataclass
class RetrainRound:
    """What a round works with once it holds the lock: the loaded config and where it came from (the challenger's
    recipe layers the YAML's and command line's keys again, on the champion's run config), the registry and its
    champion, the prediction log's database, and where the round writes and says what it does."""

    config: Config
    config_path: Optional[str]
    overrides: Optional[list[str]]
    settings: RetrainConfig  # config.retrain as loaded (the challenger's recipe may rewrite config itself)
    registry: Registry
    champion: Version
    engine: Engine
    output: Optional[str | Path] = None
    progress: bool = True
    log: Callable[[str], None] = print

    @property
    def name(self) -> str:
        return self.champion.name


@dataclass
class NewData:
    """Step 2: the new labelled texts (feedback first, then the retrain.new_data files') and what the round reports
    of them."""

    texts: list[str]
    labels: list[str]
    counts: dict[str, int]
    newest: list[tuple[str, str]]  # (text, label): the feedback since the latest retrain of any outcome
    latest: Optional[datetime]  # the newest feedback's time: this round's cutoff
    cutoff_text: Optional[str]  # the feedback read is the feedback given after this (None: all of it)
    last_text: Optional[str]  # the latest retrain's cutoff, promoted or not


def _retrain_locked(job: RetrainRound) -> dict[str, Any]:
    from thrifty.inference.predictor import Predictor
    from thrifty.training.recipe import train

    name, champion, settings = job.name, job.champion, job.settings
    started = time.perf_counter()
    champion_dir = job.registry.local_model(champion)
    champion_model = Predictor.load(champion_dir, backend="torch")  # both in fp32: a like-for-like duel
    labels_known = list(champion_model.label_names)

    # 2. new labelled data
    new = _new_data(job, champion_model, labels_known)
    texts, counts = new.texts, new.counts
    if len(texts) < settings.min_new_examples:
        return _nothing_to_do(job, new)
    newest_check = _check_newest_window(job, champion_model, new)

    # 3. the held-out slice and the reference set
    held, new_train = _split_holdout(texts, new.labels, settings.holdout_fraction, settings.seed)
    folder = _round_folder(job.output, name)
    run_dir, champion_data, base_config = _champion_run(champion)
    reference_file, reference = _reference_set(job, champion_model, labels_known, folder, run_dir, champion_data)

    # 4. the challenger's data: new rows and a replay sample of the champion's training rows
    replay_pool = _replay_pool(job, champion_model, labels_known, run_dir, champion_data)
    replay = _write_training_rows(folder, new_train, replay_pool, held, settings)
    challenger_config = _challenger_config(job, base_config, champion_dir, folder, labels_known)
    job.log(f"thrifty retrain: {name} champion v{champion.version}; {len(texts)} new labelled texts "
            f"({counts['feedback']} feedback, {counts['files']} from files): {len(new_train[0])} to train on with "
            f"{len(replay)} replayed, {len(held[0])} held out; reference set {len(reference[0])} texts")
    result = train(challenger_config, output=folder / "challenger", progress=job.progress, overwrite=True)
    challenger_model = Predictor.load(result.run_dir, backend="torch")

    # 5. the comparison on the same texts
    figures, champion_on_reference = _compare(champion_model, challenger_model,
                                              {"new_slice": held, "reference": reference})
    fairness = None
    if settings.max_gap_increase is not None:
        fairness = figures["fairness"] = _fairness(settings, challenger_config, folder, champion_dir, result.run_dir)
    decision = decide(figures["new_slice"], figures["reference"], settings, fairness)
    quarantine = _quarantine(settings, decision, newest_check, new.latest, champion_on_reference)

    # 6. register, and promote the winner
    feedback_until = (new.latest.isoformat() if new.latest is not None else new.cutoff_text) or ""
    version = _register(job, result.run_dir, decision, quarantine, reference_file, feedback_until, folder)
    report = {"status": "promoted" if decision["promote"] else "not promoted", "model": name,
              "champion": champion.version, "challenger": version.version, "decision": decision,
              "figures": figures, "data": {**counts, "new_examples": len(texts), "trained_new": len(new_train[0]),
                                           "replayed": len(replay), "held_out": len(held[0]),
                                           "reference": reference_file, "feedback_since": new.cutoff_text,
                                           "feedback_until": feedback_until, "newest_window": newest_check,
                                           "champion_on_reference": champion_on_reference,
                                           "quarantined": quarantine},
              "seconds": round(time.perf_counter() - started, 1), "folder": str(folder)}
    (folder / "retrain.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    verdict = (f"promoted: {name}@champion is now v{version.version}" if decision["promote"]
               else f"not promoted: {'; '.join(decision['reasons'])}; v{version.version} is {name}@challenger")
    job.log(f"thrifty retrain: {decision['summary']}; {verdict} ({report['seconds']:.0f} s, {folder}/retrain.json)")
    return report


def _new_data(job: RetrainRound, champion_model: Predictor, labels_known: list[str]) -> NewData:
    """Step 2: the feedback since the cutoff less the quarantined windows, then the retrain.new_data files; a label the
    champion does not have is an error."""
    from thrifty.inference.predictor import labelled_texts

    settings = job.settings
    versions = job.registry.versions(job.name)
    last_text = max((c for c in (v.tags.get("thrifty.retrain.feedback_until") for v in versions) if c), default=None)
    cutoff_text = job.champion.tags.get("thrifty.retrain.feedback_until") or None
    if settings.feedback_since == "last_retrain":  # the latest cutoff of any retrain, promoted or not
        cutoff_text = last_text
    cutoff = datetime.fromisoformat(cutoff_text) if cutoff_text else None
    last_cutoff = datetime.fromisoformat(last_text) if last_text else None
    rows, no_text = _read_feedback(job.engine, cutoff)
    latest = rows[-1][2] if rows else None
    windows = quarantined_windows(versions) if settings.quarantine_noise else []
    rows, quarantined = _leave_out_quarantined(rows, windows, job.log)
    newest = [(t, y) for t, y, when in rows if last_cutoff is None or when > last_cutoff]
    texts, labels = [t for t, _, _ in rows], [y for _, y, _ in rows]
    counts = {"feedback": len(texts), "feedback_without_text": no_text, "feedback_quarantined": quarantined,
              "files": 0}
    for path in settings.new_data:
        file_texts, ids, _, _ = labelled_texts(champion_model, path, role="new data")
        texts += file_texts
        labels += [labels_known[i] for i in ids]
        counts["files"] += len(file_texts)
    unknown = sorted({y for y in labels if y not in labels_known})
    if unknown:
        raise DataError(f"new labelled data has labels {job.name} does not have: {unknown[:5]}; its labels: "
                        f"{labels_known[:10]}")
    return NewData(texts, labels, counts, newest, latest, cutoff_text, last_text)


def _nothing_to_do(job: RetrainRound, new: NewData) -> dict[str, Any]:
    """Too few new labelled texts: said, and reported; nothing trained."""
    texts, counts = new.texts, new.counts
    job.log(f"thrifty retrain: nothing to do: {len(texts)} new labelled texts for {job.name} (feedback since "
            f"{new.cutoff_text or 'the start'}: {counts['feedback']}, files: {counts['files']}); "
            f"retrain.min_new_examples is {job.settings.min_new_examples}")
    return {"status": "nothing to do", "model": job.name, "new_examples": len(texts), **counts}


def _leave_out_quarantined(rows: list[tuple[str, str, datetime]], windows: list[dict[str, Any]],
                           log: Callable[[str], None]) -> tuple[list[tuple[str, str, datetime]], int]:
    """The feedback rows outside every quarantined window, and how many were inside one (said in the log)."""
    by_window = {i: next((w["version"] for w in windows if _in_window(r[2], w)), None) for i, r in enumerate(rows)}
    left_out = [r for i, r in enumerate(rows) if by_window[i] is not None]  # each row judged once
    if left_out:
        rows = [r for i, r in enumerate(rows) if by_window[i] is None]
        log(f"thrifty retrain: {len(left_out)} feedback texts left out: quarantined by "
            f"{', '.join(sorted({f'v{v}' for v in by_window.values() if v is not None}))} (labels no better than "
            "chance; --retrain.quarantine_noise false uses them)")
    return rows, len(left_out)


def _check_newest_window(job: RetrainRound, champion_model: Predictor, new: NewData) -> Optional[dict[str, Any]]:
    """The newest window against the champion: labels that carry nothing it knows are suspect (quarantined if the
    challenger is refused). None when quarantine is off or the window is too small to judge."""
    if not (job.settings.quarantine_noise and len(new.newest) >= job.settings.min_new_examples):
        return None
    check = agreement_beyond_chance(_answers(champion_model, [t for t, _ in new.newest]), [y for _, y in new.newest])
    check["after"] = new.last_text or ""
    job.log(f"thrifty retrain: the newest {check['texts']} feedback labels agree with the champion "
            f"{check['agreement']:.3f} (chance {check['chance']:.3f}, kappa {check['kappa']:.3f}, "
            f"p = {check['p_value']:.3g})")
    return check


def _round_folder(output: Optional[str | Path], name: str) -> Path:
    from thrifty.serving.predlog import now_utc

    stamp = now_utc().strftime("%Y%m%d-%H%M%S")
    folder = Path(output) if output is not None else Path("runs") / "retrain" / f"{name}-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _champion_run(champion: Version) -> tuple[Path, Any, Optional[Config]]:
    """(the champion's run folder, its prepared data and run config; both None when the folder is gone)."""
    from thrifty.inference.predictor import run_data

    run_dir = Path(champion.tags.get("thrifty.run_dir") or "")
    champion_run = run_dir if (run_dir / "config.yaml").exists() else None
    champion_data = base_config = None
    if champion_run is not None:
        champion_data, base_config = run_data(champion_run)
    return run_dir, champion_data, base_config


def _reference_set(job: RetrainRound, champion_model: Predictor, labels_known: list[str], folder: Path,
                   run_dir: Path, champion_data) -> tuple[str, tuple[list[str], list[str]]]:
    """(the reference file, (its texts, labels)): retrain.reference, else the one earlier retrains fixed, else the
    champion's validation split written to FOLDER/reference.csv."""
    from thrifty.inference.predictor import labelled_texts

    champion = job.champion
    reference_file = job.settings.reference or champion.tags.get("thrifty.retrain.reference") or None
    if reference_file is None:
        if champion_data is None:
            raise ConfigError(f"{job.name} version {champion.version}'s run folder ({run_dir}) is gone, so its "
                              "validation data is unknown: give a labelled reference set of the original data, "
                              "retrain.reference")
        reference_file = str((folder / "reference.csv").resolve())
        _write_csv(Path(reference_file), champion_data.validation.texts,
                   [champion_data.label_names[y] for y in champion_data.validation.labels])
    ref_texts, ref_ids, _, _ = labelled_texts(champion_model, reference_file, text_column="text", label_column="label",
                                              role="reference")
    return reference_file, (ref_texts, [labels_known[i] for i in ref_ids])


def _replay_pool(job: RetrainRound, champion_model: Predictor, labels_known: list[str], run_dir: Path,
                 champion_data) -> list[tuple[str, str]]:
    """(text, label) rows to replay: retrain.replay_data, else the champion's training data."""
    from thrifty.inference.predictor import labelled_texts

    if job.settings.replay_data:
        replay_texts, replay_ids, _, _ = labelled_texts(champion_model, job.settings.replay_data, role="replay data")
        return list(zip(replay_texts, [labels_known[i] for i in replay_ids]))
    if champion_data is not None:
        return [(t, champion_data.label_names[y]) for t, y in zip(champion_data.train.texts,
                                                                  champion_data.train.labels)]
    raise ConfigError(f"{job.name} version {job.champion.version}'s run folder ({run_dir}) is gone, so its training "
                      "data is unknown: give a file to replay, retrain.replay_data (or retrain.replay_ratio: 0)")


def _write_training_rows(folder: Path, new_train: tuple[list[str], list[str]], replay_pool: list[tuple[str, str]],
                         held: tuple[list[str], list[str]], settings: RetrainConfig) -> list[tuple[str, str]]:
    """FOLDER/train.csv (the new rows and a seeded replay sample, shuffled) and FOLDER/holdout.csv; the replay sample."""
    new_train_texts, new_train_labels = new_train
    rng = random.Random(settings.seed)
    n_replay = min(len(replay_pool), int(round(settings.replay_ratio * len(new_train_texts))))
    replay = rng.sample(replay_pool, n_replay) if n_replay else []
    mixed = list(zip(new_train_texts, new_train_labels)) + replay
    rng.shuffle(mixed)
    _write_csv(folder / "train.csv", [t for t, _ in mixed], [y for _, y in mixed])
    _write_csv(folder / "holdout.csv", *held)
    return replay


def _challenger_config(job: RetrainRound, base_config: Optional[Config], champion_dir: Path, folder: Path,
                       labels_known: list[str]) -> Config:
    """The champion's recipe (else this config), the YAML's and command line's keys on top, warm-started from the
    champion and trained on FOLDER/train.csv alone."""
    from thrifty.config import apply_overrides, config_from_dict, load_yaml

    challenger_config = base_config if base_config is not None else job.config
    if job.config_path is not None:  # the YAML's own keys (not its defaults) override the champion's recipe
        challenger_config = config_from_dict(load_yaml(job.config_path), challenger_config)
    challenger_config = apply_overrides(challenger_config, job.overrides)
    challenger_config.model.name = str(champion_dir)
    challenger_config.data.train = str((folder / "train.csv").resolve())
    challenger_config.data.validation = None
    challenger_config.data.test = None
    challenger_config.data.format = "csv"
    challenger_config.data.text_column, challenger_config.data.label_column = "text", "label"
    challenger_config.data.labels = labels_known
    challenger_config.data.max_train_examples = challenger_config.data.examples_per_class = None
    return challenger_config


def _compare(champion_model: Predictor, challenger_model: Predictor,
             sets: dict[str, tuple[list[str], list[str]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both models' accuracies and McNemar's test on each set (name -> (texts, labels)), and how far the champion's
    answers on the reference set carry its labels."""
    figures = {}
    for key, (eval_texts, eval_labels) in sets.items():
        answers_a = _answers(champion_model, eval_texts)
        right_a = [a == y for a, y in zip(answers_a, eval_labels)]
        right_b = [a == y for a, y in zip(_answers(challenger_model, eval_texts), eval_labels)]
        if key == "reference":  # is the champion informative at all (not, e.g., one label for everything)?
            champion_on_reference = agreement_beyond_chance(answers_a, eval_labels)
        figures[key] = {"texts": len(eval_texts), "champion_accuracy": round(sum(right_a) / max(1, len(right_a)), 4),
                        "challenger_accuracy": round(sum(right_b) / max(1, len(right_b)), 4),
                        "test": mcnemar_exact(right_a, right_b)}
    return figures, champion_on_reference


def _fairness(settings: RetrainConfig, challenger_config: Config, folder: Path, champion_dir: Path,
              challenger_dir: Path) -> dict[str, Any]:
    """Both models' largest counterfactual group gap, on the same set (the audit: section's, or thrifty's)."""
    from thrifty.audit.run import audit

    a = challenger_config.audit
    kwargs = dict(corpus=a.corpus, templates=a.templates, terms=a.terms, attributes=a.attributes or None,
                  association=False, log=lambda *_: None)
    gaps = {who: audit(str(path), output=folder / f"audit-{who}", **kwargs)["counterfactual"]["summary"]
            for who, path in (("champion", champion_dir), ("challenger", challenger_dir))}
    return {"champion_max_gap": gaps["champion"]["max_gap"], "challenger_max_gap": gaps["challenger"]["max_gap"],
            "attribute": gaps["challenger"]["max_gap_attribute"], "sentences": gaps["challenger"]["sentences"],
            "allowed_increase": settings.max_gap_increase}


def _quarantine(settings: RetrainConfig, decision: dict[str, Any], newest_check: Optional[dict[str, Any]],
                latest: Optional[datetime], champion_on_reference: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The newest window's quarantine (with the evidence, and its reason added to the decision) when the challenger is
    refused, those labels agree with the champion no better than chance and the champion's answers on the reference
    set do carry its labels; else None."""
    if not (not decision["promote"] and newest_check is not None and latest is not None
            and newest_check["p_value"] >= settings.significance
            and champion_on_reference["p_value"] < settings.significance):
        return None
    quarantine = {"after": newest_check["after"], "until": latest.isoformat(), "texts": newest_check["texts"],
                  "agreement": newest_check["agreement"], "chance": newest_check["chance"],
                  "kappa": newest_check["kappa"], "p_value": round(newest_check["p_value"], 6),
                  "champion_kappa_on_reference": champion_on_reference["kappa"]}
    decision["reasons"].append(
        f"the newest {quarantine['texts']} feedback labels agree with the champion no better than chance (kappa "
        f"{quarantine['kappa']:.3f}, p = {quarantine['p_value']:.3g}): quarantined, later retrains leave them out")
    return quarantine


def _register(job: RetrainRound, run_dir: Path, decision: dict[str, Any], quarantine: Optional[dict[str, Any]],
              reference_file: str, feedback_until: str, folder: Path) -> Version:
    """Step 6: the challenger registered with the round's facts as version tags (the decision, the reference set, the
    feedback cutoff, the quarantine), given the alias `challenger`, and made the champion when it won."""
    from thrifty.registry.store import CHALLENGER

    name, champion, registry = job.name, job.champion, job.registry
    version, _ = registry.register(run_dir, name, by="thrifty retrain")
    tags = {"thrifty.retrain.decision": json.dumps({k: decision[k] for k in ("promote", "reasons", "summary")}),
            "thrifty.retrain.reference": reference_file, "thrifty.retrain.feedback_until": feedback_until,
            "thrifty.retrain.champion": str(champion.version), "thrifty.retrain.folder": str(folder.resolve())}
    if quarantine is not None:
        tags["thrifty.retrain.quarantine"] = json.dumps(quarantine)
    registry.set_version_tags(name, version.version, tags)
    registry.promote(name, version.version, alias=CHALLENGER, by="thrifty retrain",
                     reason=f"challenger of v{champion.version}: {decision['summary']}")
    if decision["promote"]:
        registry.promote(name, version.version, by="thrifty retrain", reason=decision["summary"],
                         extra={"champion_was": champion.version})
    return version
