"""Labelled data sets the audit recognises by their columns, so they need no group column of their own.

**Jigsaw / Conversation AI sentence templates** (Dixon et al. 2018, "Measuring and Mitigating Unintended Bias in
Text Classification"; `sentence_templates/en_sentence_templates.csv` of conversationai/unintended-ml-bias-analysis,
the same 76,564 rows as its older `bias_madlibs_77k.csv`): columns `template, toxicity, phrase`, where `template`
names the template ("name_adj", "verb_adj", ...), not the identity. The identity is a term inside the phrase
("Hiro is a repulsive millenial", "Being lesbian is great"), taken from the word list the templates were filled
from (`words.csv`, `type=identity`, slurs left out). Derived columns:
- `identity`: the identity term in the phrase (50 of them; a phrase holds one at most), blank when there is none
  (the 864 `you_occupation` rows: background only);
- `identity_type`: its subtype in words.csv (age, disability, ethnicity, gender, religion, sexuality).
Text and label columns default to `phrase` and `toxicity`, the tested class to `toxic`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# words.csv rows with type=identity and a neutral connotation (the toxic ones are slurs), by subtype, in file order
JIGSAW_IDENTITY_TERMS: dict[str, list[str]] = {
    "sexuality": ["lesbian", "gay", "bisexual", "queer", "lgbt", "lgbtq", "homosexual", "straight", "heterosexual"],
    "gender": ["transgender", "trans", "cis", "male", "female", "nonbinary"],
    "ethnicity": ["african", "african american", "black", "white", "european", "hispanic", "latino", "latina",
                  "latinx", "mexican", "canadian", "american", "asian", "indian", "middle eastern", "chinese",
                  "japanese"],
    "religion": ["christian", "muslim", "jewish", "buddhist", "catholic", "protestant", "sikh", "taoist"],
    "age": ["old", "older", "young", "younger", "teenage", "millenial", "middle aged", "elderly"],
    "disability": ["blind", "deaf", "paralyzed"],
}


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    columns: tuple[str, ...]  # the header that identifies it (in any order, others allowed)
    text_column: str
    label_column: str
    group_column: str  # the default derived group column
    derived: tuple[str, ...]  # the group columns it can derive
    positive_label: str


JIGSAW_TEMPLATES = Layout(
    name="jigsaw_sentence_templates", title="Jigsaw sentence templates",
    columns=("template", "toxicity", "phrase"), text_column="phrase", label_column="toxicity",
    group_column="identity", derived=("identity", "identity_type"), positive_label="toxic")

LAYOUTS = (JIGSAW_TEMPLATES,)


def recognise(columns: list[str]) -> Optional[Layout]:
    """The known layout whose columns these are, or None."""
    present = {c.strip().lower() for c in columns}
    return next((layout for layout in LAYOUTS if set(layout.columns) <= present), None)


def _identity_pattern() -> re.Pattern:
    # longest first: "african american" before "african" and "american", "middle aged" before any shorter term
    terms = sorted((t for ts in JIGSAW_IDENTITY_TERMS.values() for t in ts), key=lambda t: (-len(t), t))
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(t) for t in terms) + r")(?![\w-])")


def derive(texts: list[str], column: str) -> list[str]:
    """The derived group column (`identity` or `identity_type`) of each text; blank where a text has no identity."""
    pattern = _identity_pattern()
    subtype = {t: s for s, ts in JIGSAW_IDENTITY_TERMS.items() for t in ts}
    identities = [(match.group(1) if (match := pattern.search(str(text).lower())) else "") for text in texts]
    return identities if column == "identity" else [subtype.get(t, "") for t in identities]
