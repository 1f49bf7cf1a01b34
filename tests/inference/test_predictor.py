"""The predictor: passes of similar lengths give the logits one padded pass gives, in input order."""

import numpy as np

from thrifty.inference.predictor import Predictor


def test_passes_split_by_length_give_the_logits_of_one_padded_pass(tiny_run):
    predictor = Predictor.load(tiny_run, device="cpu")
    texts = ["short", "I loved this wonderful film number 3 " * 3, "ok", "I hated this terrible film", "a " * 40]
    one_pass = predictor.logits(texts, min_fill=0.0)
    split = predictor.logits(texts, min_fill=0.9)  # nearly one pass per distinct length
    np.testing.assert_allclose(split, one_pass, atol=1e-5)
    np.testing.assert_allclose(predictor.logits(texts[::-1], min_fill=0.9), one_pass[::-1], atol=1e-5)
