"""The StopController: every stop decided in one place, the first reason kept."""

from types import SimpleNamespace

from thrifty.cost.budget import BudgetTracker, Limits
from thrifty.training.state import LoopState
from thrifty.training.stopping import StopController


def controller(**train):
    tc = SimpleNamespace(**{"early_stopping_patience": 0, "stop_at_metric": None, **train})
    tracker = BudgetTracker(Limits(seconds=None, flops=None, cost=None, price_per_hour=None, currency="USD", binding=""))
    return StopController(tc, "f1", tracker, budget_active=False)


def test_target_reached_early_stopping_and_pruning():
    stops, state = controller(stop_at_metric=0.8), LoopState()
    stops.after_evaluation(state, {"f1": 0.7})
    assert state.stop_reason is None
    stops.after_evaluation(state, {"f1": 0.85})
    assert state.stop_reason == "target_reached"

    stops, state = controller(early_stopping_patience=2), LoopState(evals_without_improvement=2)
    stops.after_evaluation(state, {"f1": 0.1})
    assert state.stop_reason == "early_stopping"

    told = []
    stops, state = controller(), LoopState()
    stops.on_evaluation = lambda n, metrics: told.append(n) or True
    stops.after_evaluation(state, {"f1": 0.1})
    assert state.stop_reason == "pruned" and told == [0]


def test_the_first_reason_is_kept_and_the_end_is_completed_or_max_steps():
    stops, state = controller(), LoopState()
    assert stops.after_step(state, last_step=False, cut_short=False) is False
    assert stops.after_step(state, last_step=True, cut_short=True) is True and state.stop_reason == "max_steps"
    stops.end_of_epochs(state)
    assert state.stop_reason == "max_steps"


def test_budget_stops_before_a_step_that_would_not_leave_room_to_save():
    tracker = BudgetTracker(Limits(seconds=10.0, flops=None, cost=None, price_per_hour=None, currency="USD", binding="time"))
    tc = SimpleNamespace(early_stopping_patience=0, stop_at_metric=None)
    stops, state = StopController(tc, "accuracy", tracker, budget_active=True), LoopState()
    stops.recent_step_seconds = [1.0]
    assert stops.before_step(state, [[0]]) is False
    stops.save_reserve = 20.0
    assert stops.before_step(state, [[0]]) is True
    assert state.stop_reason == "budget" and tracker.stopped_by == "time"


def test_loop_state_round_trips_through_a_dict():
    state = LoopState(global_step=7, history=[{"step": 7, "f1": 0.5}], plan={"fits": True})
    assert LoopState.from_dict({**state.to_dict(), "an_old_key": 1}) == state


def test_a_controller_is_complete_when_made_with_the_costs_and_the_agreement_of_the_processes():
    from thrifty.training.stopping import WorkCosts

    tracker = BudgetTracker(Limits(seconds=10.0, flops=None, cost=None, price_per_hour=None, currency="USD", binding="time"))
    tc = SimpleNamespace(early_stopping_patience=0, stop_at_metric=None)
    roomy = StopController(tc, "accuracy", tracker, budget_active=True, costs=WorkCosts(save_reserve=1.0))
    roomy.recent_step_seconds = [1.0]
    assert roomy.before_step(LoopState(), [[0]]) is False
    tight = StopController(tc, "accuracy", tracker, budget_active=True, costs=WorkCosts(save_reserve=20.0))
    tight.recent_step_seconds = [1.0]
    assert tight.before_step(LoopState(), [[0]]) is True
    # another process decided to stop (its Ctrl-C): the agreement makes it this one's too, at the same step
    elsewhere = StopController(tc, "accuracy", tracker, budget_active=False, agree=lambda values: [v or 1 for v in values])
    state = LoopState()
    assert elsewhere.after_step(state, last_step=False, cut_short=False) is True
    assert state.stop_reason == "completed" and elsewhere.user_requested
