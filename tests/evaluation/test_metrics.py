"""Which evaluation is kept as the best: the selection metric first, the validation loss on a tie."""

from thrifty.evaluation.metrics import improves


def test_first_evaluation_is_best():
    assert improves("accuracy", {"accuracy": 0.0, "loss": 3.0}, None)


def test_higher_metric_wins_whatever_the_loss():
    assert improves("f1", {"f1": 0.30, "loss": 2.0}, {"f1": 0.20, "loss": 1.0})
    assert not improves("f1", {"f1": 0.10, "loss": 0.5}, {"f1": 0.20, "loss": 1.0})


def test_tie_goes_to_the_lower_validation_loss():
    # An NER run at F1 0.0 for its first evaluations must keep the weights that learned the most.
    assert improves("f1", {"f1": 0.0, "loss": 0.8}, {"f1": 0.0, "loss": 1.2})
    assert not improves("f1", {"f1": 0.0, "loss": 1.3}, {"f1": 0.0, "loss": 1.2})


def test_loss_as_the_metric_needs_no_tie_break():
    assert improves("loss", {"loss": 0.9}, {"loss": 1.0})
    assert not improves("loss", {"loss": 1.0}, {"loss": 1.0})


def test_tie_without_losses_keeps_the_earlier():
    assert not improves("accuracy", {"accuracy": 0.5}, {"accuracy": 0.5})
