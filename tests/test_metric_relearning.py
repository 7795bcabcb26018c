"""The relearning attack metric: contract, what it separates, its budget checks and determinism."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from expunge.audit.assess import Assessor
from expunge.audit.evidence import Candidate, Evidence
from expunge.audit.metric import METRICS
from expunge.audit.relearn import Relearning, excess_area
from expunge.errors import ExpungeError
from expunge.methods.registry import unlearn_population
from expunge.testing import check_metric
from expunge.testing.metrics import metric_bench, separating_scenario


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def bench():
    return metric_bench(separating_scenario(), members=4, shadow_members=0)


@pytest.fixture(scope="module")
def hiding(bench):
    """Gradient ascent on the original: pushes forget outputs away, weights stay near the original's."""
    scenario = bench.scenario
    population, cost = unlearn_population(bench.context.original.population, scenario.split.train,
                                          scenario.forget_mask, scenario.retain_mask, "gradient_ascent",
                                          scenario.recipe, 0)
    return Candidate("gradient_ascent", Evidence("gradient_ascent", population, bench.context.data), cost)


def _excess(metric, candidate, context):
    return metric.measure(candidate, context)["relearn_excess/forget"]


def test_registered_in_the_default_audit_and_the_conformance_suite_passes(bench):
    assert METRICS.get("relearning") is Relearning
    assert "relearning" in [m.name for m in Assessor(bench.context).metrics]  # cheap enough to run by default
    assert "relearning" not in [m.name for m in Assessor(bench.context, ["klom"]).metrics]
    assert check_metric(Relearning, bench=bench) == []  # every check, separation included


def test_the_original_recovers_beyond_the_oracle_and_retraining_stays_within_its_floor(bench, hiding):
    metric, context = Relearning(), bench.context
    floor = _excess(metric, Candidate("second oracle", context.second_oracle), context)
    original, retrained = (_excess(metric, c, context) for c in bench.candidates)
    rule = next(r for r in metric.rows if r.key == "relearn_excess/forget").closeness
    assert original.value > retrained.value + 10, (original.value, retrained.value)
    assert rule.distance(retrained.value, floor.value, floor.spread) <= 1, (retrained.value, floor)
    assert rule.distance(original.value, floor.value, floor.spread) > 2
    ga = _excess(metric, hiding, context)
    assert ga.value > retrained.value, (ga.value, retrained.value)
    details = original.details
    assert details["steps"] == 20 and details["optimizer"] == "adam" and details["batch_size"] == 32
    assert details["lr"] == bench.scenario.recipe.lr
    assert details["fine_tuned_examples"] == 10 and details["held_out_examples"] == 20  # 30 forget examples


def test_curve_rows_are_read_against_the_oracle_and_the_area_against_the_floor(bench):
    assessment = Assessor(bench.context, ["relearning"]).assess(bench.original, plots=False)
    rows = {r.key: r for r in assessment.rows}
    oracle = Relearning().curves(bench.context.oracle, bench.context)["accuracy"]
    for i, step in enumerate((0, 1, 2, 5, 10, 20)):
        row = rows[f"relearn_accuracy_{step}/forget"]
        assert row.reference_kind == "oracle" and row.reference == pytest.approx(oracle[:, i].mean())
    headline = rows["relearn_excess/forget"]
    assert headline.reference_kind == "noise_floor" and not headline.headline and headline.judgement == "bad"
    assert rows["relearn_accuracy_0/forget"].judgement == "bad"  # the original still knows its forget set


def test_a_bad_budget_or_an_empty_subset_is_one_clear_line():
    for options, message in (({"steps": 0}, "at least 1 fine-tuning step; got 0"),
                             ({"steps": -3}, "at least 1 fine-tuning step"),
                             ({"fraction": 0, "min_examples": 0}, "relearning subset is empty"),
                             ({"steps": 5, "checkpoints": [0, 2, 10]}, "from 0 to the budget"),
                             ({"lr": 0.0}, "learning rate must be positive")):
        with pytest.raises(ExpungeError, match=message) as caught:
            Relearning(**options)
        assert "\n" not in str(caught.value)
    with pytest.raises(ExpungeError, match="subset is empty"):
        Relearning(min_examples=10).subset(1, seed=0)


def test_the_same_seed_gives_the_same_curve_and_the_budget_shapes_the_rows(bench):
    again = bench.fresh()  # the same populations behind new views: nothing memoised is shared
    first = Relearning().curves(bench.retrained.evidence, bench.context)
    second = Relearning().curves(again.retrained.evidence, again.context)
    np.testing.assert_array_equal(first["accuracy"], second["accuracy"])
    np.testing.assert_array_equal(first["fit"], second["fit"])
    assert first["accuracy"].shape == (4, 6)
    tuned, held = Relearning().subset(30, seed=0)
    assert len(tuned) == 10 and len(held) == 20 and not set(tuned) & set(held)
    assert list(Relearning().subset(30, seed=1)[0]) != list(tuned)
    short = Relearning(steps=3)
    assert short.checkpoints == (0, 1, 2, 3)
    assert [r.key for r in short.rows if r.name.startswith("relearn_accuracy")][-1] == "relearn_accuracy_3/forget"
    assert set(short.measure(bench.original, bench.context)) == {r.key for r in short.rows}


def test_excess_area_is_the_mean_gap_over_the_budget():
    t = np.array([0, 1, 2, 5])
    reference = np.array([50.0, 50.0, 50.0, 50.0])
    curves = np.array([[50.0, 50.0, 50.0, 50.0], [60.0, 60.0, 60.0, 60.0], [50.0, 50.0, 50.0, 80.0]])
    np.testing.assert_allclose(excess_area(curves, reference, t), [0.0, 10.0, 30 * 3 / 2 / 5])
