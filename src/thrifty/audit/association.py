"""Association tests on sentence embeddings (SEAT, May et al. 2019; WEAT, Caliskan et al. 2017): what a pre-trained
encoder brings in before any fine-tuning.

Each word of the two target sets (X, Y: e.g. European- and African-American first names) and the two attribute sets
(A, B: pleasant and unpleasant words) is put into semantically bleached sentences ("This is Katie."); a word's
embedding is the mean of its sentences' unit embeddings. For a target word w, s(w) = mean cosine to A - mean cosine
to B. Effect size d = (mean s over X - mean s over Y) / standard deviation of s over X and Y (Cohen's d; positive:
X sits nearer A than Y does; |d| of 0.2/0.5/0.8 is small/medium/large). The p-value is one-sided, from a
permutation test over equal-size re-partitions of X and Y (words, not sentences, are permuted: a word's sentences are
not independent), `permutations` random ones (exact when there are fewer partitions than that).
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.audit.sets import AssociationTest


def word_embeddings(words: Sequence[str], templates: Sequence[str], embed: Callable) -> np.ndarray:
    sentences = [t.replace("{word}", w[:1].upper() + w[1:] if t.startswith("{word}") else w)
                 for w in words for t in templates]
    vectors = embed(sentences).reshape(len(words), len(templates), -1).mean(axis=1)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def seat(test: AssociationTest, templates: Sequence[str], embed: Callable, permutations: int = 10_000,
         seed: int = 0) -> dict[str, Any]:
    (x_name, x_words), (y_name, y_words) = list(test.targets.items())
    (a_name, a_words), (b_name, b_words) = list(test.attributes.items())
    x, y = word_embeddings(x_words, templates, embed), word_embeddings(y_words, templates, embed)
    a, b = word_embeddings(a_words, templates, embed), word_embeddings(b_words, templates, embed)
    targets = np.vstack([x, y])
    s = (targets @ a.T).mean(axis=1) - (targets @ b.T).mean(axis=1)
    n_x = len(x)
    observed = s[:n_x].sum() - s[n_x:].sum()
    effect = (s[:n_x].mean() - s[n_x:].mean()) / s.std(ddof=1)
    total = comb(len(s), n_x)
    if total <= permutations:  # exact: every partition
        stats = np.array([2 * s[list(idx)].sum() - s.sum() for idx in combinations(range(len(s)), n_x)])
        exact = True
    else:
        rng = np.random.default_rng(seed)
        picks = np.argsort(rng.random((permutations, len(s))), axis=1)[:, :n_x]
        stats = 2 * s[picks].sum(axis=1) - s.sum()
        exact = False
    p = (np.sum(stats >= observed - 1e-12) + (0 if exact else 1)) / (len(stats) + (0 if exact else 1))
    return {"targets": [x_name, y_name], "attributes": [a_name, b_name], "effect_size": round(float(effect), 4),
            "p_value": round(float(p), 6), "permutations": int(len(stats)), "exact": exact,
            "words": {x_name: len(x_words), y_name: len(y_words), a_name: len(a_words), b_name: len(b_words)},
            "sentences": (len(x_words) + len(y_words) + len(a_words) + len(b_words)) * len(templates)}


def run_tests(tests: Sequence[AssociationTest], templates: Sequence[str], embed: Callable, permutations: int = 10_000,
              seed: int = 0) -> dict[str, Any]:
    results = {t.name: seat(t, templates, embed, permutations, seed) for t in tests}
    largest = max(results.items(), key=lambda kv: abs(kv[1]["effect_size"]), default=(None, {"effect_size": 0.0}))
    return {"tests": results, "templates": list(templates),
            "summary": {"max_abs_effect_size": round(abs(largest[1]["effect_size"]), 4), "max_effect_test": largest[0],
                        "significant_associations": sum(r["p_value"] < 0.05 for r in results.values())}}
