"""One suite every registered audit metric must pass (scikit-learn's check_estimator idea, for metrics).

Registering a metric is what gets it tested: the checks are parametrised over the
registry, so a metric added later is covered without a new test. The suite itself is
public (``expunge.testing.check_metric``); the broken metrics below show that each check
catches what it names.
"""
import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from expunge.audit.evidence import Candidate
from expunge.audit.metric import METRICS, Closeness, Metric, Row, population_mean
from expunge.audit.results import Measurement
from expunge.errors import ExpungeError
from expunge.testing import ContractViolation, check_metric
from expunge.testing.metrics import CHECKS, FAST_CHECKS, metric_bench, separating_scenario

NAMES = METRICS.names()


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    # CKA multiplies small matrices; on two shared cores numpy's BLAS threads make that 10-20x slower.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def bench():
    return metric_bench(separating_scenario())


@pytest.fixture(scope="module")
def regression_bench():
    from expunge.training.recipe import Recipe
    from expunge.training.scenario import Scenario

    recipe = Recipe(model="mlp", model_kwargs={"hidden": [32]}, lr=3e-3, epochs=30, batch_size=32)
    return metric_bench(Scenario.build("diabetes", "random:0.1", recipe=recipe))


def _language_only(cls) -> bool:
    """Metrics of language models (TOFU's): they read answer variants, not applicable to classification data;
    tests/test_tofu_metrics.py checks them on a language-model audit."""
    return "sequence_loglik" in cls.needs


@pytest.mark.parametrize("name", NAMES)
def test_metric_contract(name, bench):
    cls = METRICS.get(name)
    notes = check_metric(cls, bench=bench, checks=FAST_CHECKS)
    if _language_only(cls):
        assert len(notes) == 1 and "not applicable to the classification task" in notes[0]
        return
    assert notes == []  # every other built-in metric applies to classification and has shadows here


@pytest.mark.parametrize("name", NAMES)
def test_original_scores_worse_than_retraining(name, bench):
    cls = METRICS.get(name)
    notes = check_metric(cls, bench=bench, checks=["separates_original"])
    judged = [row for row in cls.rows if row.closeness.rule != "none" and row.split in ("forget", "all")]
    if cls.separates_original and judged and not _language_only(cls):
        assert notes == []  # compared, not skipped


@pytest.mark.parametrize("name", NAMES)
def test_metric_contract_on_regression(name, regression_bench):
    cls = METRICS.get(name)
    notes = check_metric(cls, bench=regression_bench, checks=FAST_CHECKS)
    classification_only = bool({"probabilities", "correct", "confidence"} & cls.needs) or _language_only(cls)
    assert any("not applicable" in note for note in notes) == classification_only


def test_new_metrics_call_the_original_far_from_retraining(bench):
    """Distances by each row's own rule, on the separating scenario (N = 8): the original is outside tolerance of
    the noise floor for JS and activation distance, and farther than retraining from the oracle's ZRF."""
    context = bench.context
    for name, key in (("zrf", "zrf/forget"), ("js_divergence", "js_divergence/forget"),
                      ("activation_distance", "activation_distance/forget")):
        metric = METRICS.get(name)()
        row = next(r for r in metric.rows if r.key == key)
        reference_population = context.oracle if metric.reference_kind == "oracle" else context.second_oracle
        reference = metric.measure(Candidate("reference", reference_population), context)[key]
        original, retrained = (metric.measure(c, context)[key].value for c in bench.candidates)
        far = row.closeness.distance(original, reference.value, reference.spread)
        near = row.closeness.distance(retrained, reference.value, reference.spread)
        assert near <= 1 and far > near, (name, original, retrained, reference.value)
        if name != "zrf":  # ZRF: 0.671 vs the oracle's 0.704 +- 0.017, just inside 2 std (0.95); 2.6 on MNIST-1D
            assert far > 2, (name, original, reference.value)


# ----------------------------------------------------------------------------- the suite catches violations
class ForgetAccuracy(Metric):
    """A correct third-party metric: forget accuracy against the oracle's."""

    name = "test_forget_accuracy"
    summary = "forget accuracy"
    description = "Top-1 accuracy on the forget set, beside the oracle's."
    definition = "test_forget_accuracy@top1"
    reference_kind = "oracle"
    needs = frozenset({"correct"})
    rows = (Row("test_forget_accuracy", "forget", closeness=Closeness("band", 2.0, 1.0)),)

    def measure(self, candidate, context):
        return {"test_forget_accuracy/forget":
                population_mean(100.0 * candidate.evidence.scores("forget")["correct"].mean(axis=1))}


class NoVariant(ForgetAccuracy):
    definition = "forget_accuracy"


class NeedsArgument(ForgetAccuracy):
    def __init__(self, threshold):
        self.threshold = threshold


class UnknownNeed(ForgetAccuracy):
    needs = frozenset({"correct", "logits"})


class MissingRow(ForgetAccuracy):
    rows = ForgetAccuracy.rows + (Row("test_forget_accuracy", "test", closeness=Closeness("band", 2.0, 1.0)),)


class UndeclaredRow(ForgetAccuracy):
    def measure(self, candidate, context):
        return super().measure(candidate, context) | {"test_forget_accuracy/retain": Measurement(1.0)}


class NoReference(ForgetAccuracy):
    reference_kind = "noise_floor"

    def measure(self, candidate, context):
        return {} if candidate.evidence is context.second_oracle else super().measure(candidate, context)


class NotFinite(ForgetAccuracy):
    def measure(self, candidate, context):
        if candidate.evidence is context.oracle:
            return super().measure(candidate, context)
        return {"test_forget_accuracy/forget": Measurement(math.nan, None, candidate.evidence.members)}


class Unseeded(ForgetAccuracy):
    def measure(self, candidate, context):
        noise = np.random.default_rng().normal()  # no seed: a new value every call
        return {"test_forget_accuracy/forget": Measurement(50.0 + noise, None, candidate.evidence.members)}


class BlindToForgetting(ForgetAccuracy):
    """Reads the oracle where it should read the candidate: every population looks like retraining."""

    def measure(self, candidate, context):
        return {"test_forget_accuracy/forget":
                population_mean(100.0 * context.oracle.scores("forget")["correct"].mean(axis=1))}


class Raises(ForgetAccuracy):
    def measure(self, candidate, context):
        raise KeyError("margin")


def test_a_correct_metric_passes_every_check(bench):
    assert check_metric(ForgetAccuracy, bench=bench) == []
    assert check_metric(ForgetAccuracy, checks=["registry", "instantiable", "needs"]) == []  # no bench needed


@pytest.mark.parametrize("broken, check", [
    (NoVariant, "registry"),
    (int, "registry"),
    (NeedsArgument, "instantiable"),
    (UnknownNeed, "needs"),
    (MissingRow, "rows"),
    (UndeclaredRow, "rows"),
    (Raises, "rows"),
    (NoReference, "reference"),
    (NotFinite, "finite"),
    (Unseeded, "deterministic"),
    (BlindToForgetting, "separates_original"),
])
def test_a_broken_metric_is_named_and_its_violation_too(broken, check, bench):
    with pytest.raises(ContractViolation) as caught:
        check_metric(broken, bench=bench)
    assert caught.value.check == check
    assert str(caught.value).startswith(f"{check}: ")
    if broken is not int:
        assert repr(broken.name) in str(caught.value)
    assert isinstance(caught.value, AssertionError) and isinstance(caught.value, ExpungeError)


def test_options_reach_the_metric_and_unknown_checks_are_refused(bench):
    assert check_metric(METRICS.get("klom"), bench=bench, options={"convention": "authors"}, checks=FAST_CHECKS) == []
    with pytest.raises(ContractViolation, match="instantiable: .*convention"):
        check_metric(METRICS.get("klom"), bench=bench, options={"convention": "paper"}, checks=["instantiable"])
    with pytest.raises(ExpungeError, match="unknown metric check"):
        check_metric(ForgetAccuracy, bench=bench, checks=["speed"])
    assert set(FAST_CHECKS) < set(CHECKS)


# ----------------------------------------------------------------------------- the project's reference scenario
@pytest.fixture(scope="module")
def mnist1d_bench():
    from expunge.training.scenario import Scenario

    return metric_bench(Scenario.build("mnist1d", "random:0.1"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_metric_contract_on_mnist1d(name, mnist1d_bench):
    # MNIST-1D with its default recipe (about a minute to train the bench on one core), every check.
    check_metric(METRICS.get(name), bench=mnist1d_bench)
