"""What the audit asks the model about: counterfactual sentences (templates x identity terms, or a ready corpus in
the Equity Evaluation Corpus's layout) and association tests (SEAT), from thrifty's default set
(resources/audit_terms.yaml, its sources cited there) or the user's files. Every file is checked here, and a bad one
is one line naming the problem and the fix."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from thrifty.errors import ConfigError, DataError

PLACEHOLDER = "{person}"
EEC_COLUMNS = ("Sentence", "Template", "Person", "Gender", "Race", "Emotion")


@dataclass(frozen=True)
class Sentence:
    """One counterfactual sentence: `key` names the sentences it is compared with (the same template, another
    person); `attribute`/`group`/`term` say who is in it."""

    text: str
    key: str
    attribute: str
    group: str
    term: str


@dataclass
class CounterfactualSet:
    sentences: list[Sentence]
    source: str
    attributes: dict[str, list[str]] = field(default_factory=dict)  # attribute -> its groups, in order

    @property
    def texts(self) -> list[str]:
        """Each distinct sentence once (a name can be in two attributes: gender and race)."""
        return list(dict.fromkeys(s.text for s in self.sentences))


@dataclass
class AssociationTest:
    name: str
    targets: dict[str, list[str]]  # two target word sets (X, Y)
    attributes: dict[str, list[str]]  # two attribute word sets (A, B)


def default_set() -> dict[str, Any]:
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files("thrifty.resources").joinpath("audit_terms.yaml").read_text(encoding="utf-8"))


def fill(template: str, term: str) -> str:
    """The template with the term in place; a sentence that starts with the person starts with a capital."""
    text = template.replace(PLACEHOLDER, term)
    if template.startswith(PLACEHOLDER) and term[:1].islower():
        text = term[:1].upper() + text[1:]
    return text


def read_templates(path: str | Path) -> list[str]:
    """One template per line (blank lines and lines starting with # skipped), each with {person}."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"templates file not found: {file}; give a text file with one template per line, e.g. "
                        f"'{PLACEHOLDER} made me feel angry.'")
    templates = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if PLACEHOLDER not in line:
            raise DataError(f"{file} line {number} has no {PLACEHOLDER} placeholder: {line[:80]!r}; write where the "
                            f"person goes as {PLACEHOLDER}")
        templates.append(line)
    if not templates:
        raise DataError(f"{file} has no templates; give one per line, each with {PLACEHOLDER}")
    return templates


def read_terms(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """attribute -> group -> terms, from YAML (that mapping) or CSV (columns attribute, group, term)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"terms file not found: {file}; give YAML (attribute: {{group: [terms]}}) or CSV with columns "
                        "attribute, group, term")
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise DataError(f"{file} must map each attribute to its groups and each group to a list of terms, e.g. "
                            "gender: {female: [my sister], male: [my brother]}")
        terms = {str(a): {str(g): [str(t) for t in (ts or [])] for g, ts in groups.items()}
                 for a, groups in loaded.items()}
    else:
        with open(file, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("attribute", "group", "term") if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{file} lacks column(s) {missing}; a terms CSV has columns attribute, group, term "
                                f"(it has {reader.fieldnames})")
            terms: dict[str, dict[str, list[str]]] = {}
            for row in reader:
                terms.setdefault(row["attribute"].strip(), {}).setdefault(row["group"].strip(), [])
                if row["term"].strip():
                    terms[row["attribute"].strip()][row["group"].strip()].append(row["term"].strip())
    check_terms(terms, str(file))
    return terms


def check_terms(terms: dict[str, dict[str, list[str]]], source: str) -> None:
    if not terms:
        raise DataError(f"{source} has no attributes; give at least one with two groups of terms")
    for attribute, groups in terms.items():
        empty = [g for g, ts in groups.items() if not ts]
        if empty:
            raise DataError(f"{source}: group {empty[0]!r} of attribute {attribute!r} has no terms; give it at least "
                            "one, or remove the group")
        if len(groups) < 2:
            raise DataError(f"{source}: attribute {attribute!r} has {len(groups)} group; a comparison needs at least 2")


def counterfactual_set(templates: Optional[str] = None, terms: Optional[str] = None,
                       attributes: Optional[list[str]] = None) -> CounterfactualSet:
    """Templates x terms: each template filled with every term of every group of every attribute."""
    default = default_set()
    template_list = read_templates(templates) if templates else list(default["templates"])
    term_map = read_terms(terms) if terms else default["attributes"]
    if attributes:
        unknown = [a for a in attributes if a not in term_map]
        if unknown:
            raise ConfigError(f"attribute(s) {unknown} are not in the terms; they have: {', '.join(term_map)}")
        term_map = {a: term_map[a] for a in attributes}
    sentences = [Sentence(fill(template, term), f"t{i}", attribute, group, term)
                 for attribute, groups in term_map.items() for i, template in enumerate(template_list)
                 for group, group_terms in groups.items() for term in group_terms]
    source = (f"{'templates ' + templates if templates else 'thrifty default templates'} "
              f"({len(template_list)}) x {'terms ' + terms if terms else 'thrifty default terms'} "
              f"({sum(len(ts) for g in term_map.values() for ts in g.values())} in {len(term_map)} attributes)")
    return CounterfactualSet(sentences, source, {a: list(g) for a, g in term_map.items()})


def read_corpus(path: str | Path) -> CounterfactualSet:
    """A ready corpus in the Equity Evaluation Corpus's layout: each sentence with its Template, Person, Gender and
    Race (Emotion too; blank where a sentence has none). Sentences with the same template filled the same way except
    for the person are compared; attributes are gender (Gender) and race (Race), each where the column is filled."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"corpus file not found: {file}; give a CSV with columns {', '.join(EEC_COLUMNS)}")
    with open(file, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in EEC_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{file} lacks column(s) {', '.join(missing)}; a corpus in the Equity Evaluation Corpus's "
                            f"layout has {', '.join(EEC_COLUMNS)} (it has {', '.join(columns) or 'none'})")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    sentences = []
    for row in rows:
        if not row["Sentence"] or not row["Person"] or row["Person"] not in row["Sentence"]:
            continue
        key = row["Sentence"].replace(row["Person"], PLACEHOLDER, 1)  # the template as filled, less the person
        for attribute, column in (("gender", "Gender"), ("race", "Race")):
            if row[column]:
                sentences.append(Sentence(row["Sentence"], key, attribute, row[column], row["Person"]))
    groups: dict[str, list[str]] = {}
    for s in sentences:
        if s.group not in groups.setdefault(s.attribute, []):
            groups[s.attribute].append(s.group)
    groups = {a: g for a, g in groups.items() if len(g) >= 2}
    sentences = [s for s in sentences if s.attribute in groups]
    if not sentences:
        raise DataError(f"{file} has no sentences to compare: each needs its Person within the Sentence and at least "
                        "two Gender or Race groups")
    return CounterfactualSet(sentences, f"corpus {file} ({len({s.text for s in sentences})} sentences)", groups)


def sentence_set(corpus: Optional[str], templates: Optional[str], terms: Optional[str],
                 attributes: Optional[list[str]]) -> CounterfactualSet:
    """The audit's sentences: a ready corpus when given, else templates x terms (defaults where not given)."""
    return read_corpus(corpus) if corpus else counterfactual_set(templates, terms, attributes)


def association_tests(names: Optional[list[str]] = None) -> tuple[list[AssociationTest], list[str]]:
    """The default SEAT tests (all, or those named) and their bleached sentence templates."""
    default = default_set()
    tests = [AssociationTest(name, spec["targets"], spec["attributes"])
             for name, spec in default["association_tests"].items() if names is None or name in names]
    if names:
        unknown = sorted(set(names) - {t.name for t in tests})
        if unknown:
            raise ConfigError(f"association test(s) {unknown} unknown; thrifty has: "
                              f"{', '.join(default['association_tests'])}")
    return tests, list(default["association_templates"])
