"""Scoring written answers (models/generation.py): exact match after normalisation, stop strings, ROUGE-L."""

from thrifty.models.generation import answer_matches, cut_at_stop, rouge_l


def test_exact_match_normalises_and_reads_the_first_line():
    assert answer_matches(" Joy.\n\nText: next", "joy") and not answer_matches("joyful", "joy")
    assert answer_matches("two words", "Two  words") and cut_at_stop("yes###no", ["###"]) == "yes"


def test_rouge_l_is_googles():
    assert rouge_l(["the cat sat on the mat"], ["the cat sat on the mat"]) == 1.0
    assert 0.0 < rouge_l(["the cat sat"], ["a cat sat down"]) < 1.0
