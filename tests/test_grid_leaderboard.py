"""The grid leaderboard: means over scenario seeds, bootstrap intervals, ties, the HTML grid report."""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from expunge.bench.leaderboard import (
    TIE_RULE,
    FewSeedsWarning,
    leaderboard,
    metric_key,
    results_frame,
)
from expunge.errors import ExpungeError

KLOM = {"metric": "klom_p95", "split": "forget", "reference_kind": "noise_floor",
        "label": "KLoM forget P95", "headline": 7, "unit": "", "definition": "klom@test"}
TA = {"metric": "accuracy", "split": "test", "reference_kind": "oracle",
      "label": "TA", "headline": 3, "unit": "%", "definition": "accuracy@test"}
F = {"metric": "competition_f", "split": "forget", "reference_kind": "noise_floor",
     "label": "F", "headline": 6, "unit": "", "definition": "f@test"}
COST = {"metric": "cost_gradients", "split": "all", "reference_kind": "constant",
        "label": "cost", "headline": 9, "unit": "×", "definition": "cost@test"}
OFFSETS = (-0.1, 0.0, 0.1, 0.05, -0.05)  # the same seed-to-seed scatter for every method


def rows(method, metric, values, references, dataset="gaussians", rule="random:0.1", members=8):
    return [dict(dataset=dataset, forget_rule=rule, method=method, hyperparameters="{}", scenario_seed=seed,
                 members=members, value=value, spread=0.0, reference=reference, n_models=members, **metric)
            for seed, (value, reference) in enumerate(zip(values, references))]


def frame(*parts):
    return pd.DataFrame([row for part in parts for row in part])


def cell(board, method, metric="klom_p95/forget", scenario=None):
    chosen = board[(board["method"] == method) & (board["metric"] == metric)]
    if scenario is not None:
        chosen = chosen[chosen["scenario"] == scenario]
    assert len(chosen) == 1
    return chosen.iloc[0]


def test_interval_contains_the_mean_and_shrinks_with_more_seeds():
    from scipy.stats import norm

    widths = {}
    for n in (4, 10, 40):
        values = 2.0 + 0.5 * norm.ppf(np.linspace(0.05, 0.95, n))  # the same spread at every n, no luck involved
        board = leaderboard(frame(rows("finetune", KLOM, values, [1.0] * n)))
        row = cell(board, "finetune")
        assert row["n_seeds"] == n and row["mean"] == pytest.approx(values.mean())
        assert row["ci_low"] < row["mean"] < row["ci_high"]
        assert row["relative_low"] <= row["relative"] <= row["relative_high"]
        widths[n] = row["ci_high"] - row["ci_low"]
    assert widths[40] < widths[10] < widths[4] and widths[40] < widths[4] / 2


def test_same_frame_same_intervals_and_a_cell_does_not_depend_on_other_methods():
    a = rows("a", KLOM, [1.0 + o for o in OFFSETS], [1.0] * 5)
    b = rows("b", KLOM, [2.0 + 3 * o for o in OFFSETS], [1.0] * 5)
    alone, together = leaderboard(frame(a)), leaderboard(frame(a, b))
    assert cell(alone, "a")["ci_low"] == cell(together, "a")["ci_low"]
    assert cell(leaderboard(frame(a, b)), "b")["ci_high"] == cell(together, "b")["ci_high"]


def test_ties_when_intervals_overlap_and_not_otherwise():
    floors = [1.0] * 5
    data = frame(rows("retrain", KLOM, [1.0 + o for o in OFFSETS], floors),
                 rows("scrub", KLOM, [1.05 + o for o in OFFSETS], floors),
                 rows("gradient_ascent", KLOM, [3.0 + o for o in OFFSETS], floors))
    board = leaderboard(data)
    best = cell(board, "retrain")
    assert best["best"] and best["tied_best"] and best["rank"] == 1 and best["direction"] == "lower"
    assert cell(board, "scrub")["tied_best"] and not cell(board, "scrub")["best"]
    assert not cell(board, "gradient_ascent")["tied_best"] and cell(board, "gradient_ascent")["rank"] == 3
    # Higher is better for F: the highest mean is best, and a clearly lower one is not tied.
    data = frame(rows("retrain", F, [0.9 + o / 10 for o in OFFSETS], [0.5] * 5),
                 rows("finetune", F, [0.2 + o / 10 for o in OFFSETS], [0.5] * 5))
    board = leaderboard(data)
    assert cell(board, "retrain", "competition_f/forget")["best"]
    assert not cell(board, "finetune", "competition_f/forget")["tied_best"]
    assert "overlaps the best method's interval" in TIE_RULE


def test_one_seed_gives_no_interval_and_says_so():
    board = leaderboard(frame(rows("a", KLOM, [1.2], [1.0]), rows("b", KLOM, [1.5], [1.0])))
    row = cell(board, "a")
    assert row["n_seeds"] == 1 and math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert row["note"] == "1 seed: no interval" and row["mean"] == pytest.approx(1.2)
    assert row["best"] and not cell(board, "b")["tied_best"]  # points compared as points


def test_two_seeds_warn_that_intervals_are_wide():
    with pytest.warns(FewSeedsWarning, match="2-3 scenario seeds"):
        board = leaderboard(frame(rows("a", KLOM, [1.2, 1.4], [1.0, 1.0])))
    row = cell(board, "a")
    assert row["ci_low"] <= row["mean"] <= row["ci_high"] and "wide interval" in row["note"]


def test_reference_handling_follows_the_reference_kind():
    data = frame(rows("finetune", KLOM, [2.0, 3.0, 4.0, 2.0], [1.0, 2.0, 2.0, 1.0]),  # per-seed ratios 2, 1.5, 2, 2
                 rows("finetune", TA, [80.0, 82.0, 84.0, 82.0], [90.0, 90.0, 91.0, 89.0]),
                 rows("finetune", COST, [0.2, 0.25, 0.3, 0.25], [1.0] * 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # four seeds: no warning
        board = leaderboard(data)
    klom = cell(board, "finetune")
    assert klom["relative_kind"] == "ratio" and klom["relative"] == pytest.approx(1.875)
    assert klom["reference"] == pytest.approx(1.5)
    ta = cell(board, "finetune", "accuracy/test")
    assert ta["relative_kind"] == "difference" and ta["relative"] == pytest.approx(-8.0)
    assert ta["direction"] == "closest" and ta["score"] == pytest.approx(8.0)
    cost = cell(board, "finetune", "cost_gradients")
    assert cost["relative"] == pytest.approx(0.25) and cost["direction"] == "lower"
    # Headline order, whatever the frame's order: TA (3), KLoM (7), cost (9).
    assert list(board["metric"]) == ["accuracy/test", "klom_p95/forget", "cost_gradients"]


def test_closeness_metrics_rank_by_distance_to_the_oracle_either_side():
    oracle = [90.0] * 5
    board = leaderboard(frame(rows("above", TA, [91.0 + o for o in OFFSETS], oracle),
                              rows("below", TA, [84.0 + o for o in OFFSETS], oracle)))
    assert cell(board, "above", "accuracy/test")["best"]
    assert not cell(board, "below", "accuracy/test")["tied_best"]


def test_unusable_floor_ranks_on_the_value_and_lower_is_better_column_wins():
    no_floor = [0.0] * 4
    board = leaderboard(frame(rows("a", F, [0.1, 0.2, 0.1, 0.2], no_floor),
                              rows("b", F, [0.6, 0.7, 0.6, 0.7], no_floor)))
    assert cell(board, "b", "competition_f/forget")["best"]
    assert cell(board, "b", "competition_f/forget")["ranked_on"] == "value"
    assert math.isnan(cell(board, "b", "competition_f/forget")["relative"])
    data = frame(rows("a", F, [0.1, 0.2, 0.1, 0.2], [0.5] * 4), rows("b", F, [0.6, 0.7, 0.6, 0.7], [0.5] * 4))
    data["lower_is_better"] = True
    assert cell(leaderboard(data), "a", "competition_f/forget")["best"]


def test_bad_input_is_named():
    data = frame(rows("a", KLOM, [1.0, 1.1, 1.2, 1.0], [1.0] * 4))
    with pytest.raises(ExpungeError, match="no results for metric 'klomm'"):
        leaderboard(data, metrics=["klomm"])
    with pytest.raises(ExpungeError, match="lacks the column"):
        leaderboard(data.drop(columns=["scenario_seed"]))
    twice = pd.concat([data, data.assign(hyperparameters='{"lr": 1}')])
    with pytest.raises(ExpungeError, match="several hyperparameter settings"):
        leaderboard(twice)


def _grid():
    parts = []
    for dataset in ("gaussians", "mnist1d"):
        for method, klom, cost, ta in (("retrain", 1.0, 1.0, 90.0), ("finetune", 1.6, 0.2, 86.0),
                                       ("gradient_ascent", 3.0, 0.05, 70.0)):
            parts.append(rows(method, KLOM, [klom + o for o in OFFSETS], [1.0] * 5, dataset))
            parts.append(rows(method, COST, [cost * (1 + o / 10) for o in OFFSETS], [1.0] * 5, dataset))
            parts.append(rows(method, TA, [ta + o for o in OFFSETS], [90.0] * 5, dataset))
    return frame(*parts)


def test_terminal_table_shows_intervals_and_bolds_the_tied_best():
    from rich.console import Console

    from expunge.report.grid import grid_table

    board = leaderboard(_grid())
    table = grid_table(board)
    console = Console(record=True, width=400, force_terminal=True, color_system="standard")
    console.print(table)
    text = console.export_text(styles=False, clear=False)
    assert "gaussians / random:0.1 / N=8" in text and "mnist1d / random:0.1 / N=8" in text
    retrain = cell(board, "retrain", scenario="gaussians / random:0.1 / N=8")
    assert f"1 [{retrain['ci_low']:.3g}, {retrain['ci_high']:.3g}]" in text
    styled = console.export_text(styles=True)
    assert re.search(r"\x1b\[1m1 \[", styled), "retrain's tied-best KLoM cell is bold"
    assert not re.search(r"\x1b\[1m3 \[", styled), "gradient ascent's KLoM is not tied"


def test_html_grid_report_has_a_heat_map_per_headline_metric_and_a_frontier_per_scenario(tmp_path):
    from expunge.report.grid import write_grid_report

    path = write_grid_report(_grid(), tmp_path / "grid.html", title="two datasets")
    text = path.read_text(encoding="utf-8")
    for key in ("accuracy-test", "klom-p95-forget", "cost-gradients"):
        assert re.search(rf'<figure id="heatmap-{key}"><img class="plot" src="data:image/png;base64,', text)
    for dataset in ("gaussians", "mnist1d"):
        assert re.search(rf'<figure id="frontier-{dataset}---random-0-1---n-8"><img class="plot" '
                         'src="data:image/png;base64,', text)
    assert "Pareto front: gradient_ascent, finetune, retrain" in text
    assert '<table id="grid-leaderboard">' in text and '<td class="tied"' in text and "Ties." in text
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["grid.html"]


def test_a_crash_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    from expunge.report.grid import write_grid_report

    target = tmp_path / "grid.html"
    original = Path.write_text

    def crash(self, data, *args, **kwargs):
        original(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError("disk full")

    data = _grid()
    monkeypatch.setattr(Path, "write_text", crash)
    with pytest.raises(OSError, match="disk full"):
        write_grid_report(data, target)
    assert not any(tmp_path.iterdir()), "no partial or temporary file is left"
    monkeypatch.setattr(Path, "write_text", original)
    target.write_text("good old report", encoding="utf-8")
    monkeypatch.setattr(Path, "write_text", crash)
    with pytest.raises(OSError):
        write_grid_report(data, target)
    assert target.read_text(encoding="utf-8") == "good old report"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.html"]


def test_leaderboard_of_real_audits(tmp_path):
    """Two scenario seeds of a tiny real audit (gaussians, N = 2, 2 epochs): retrain and finetune."""
    from expunge.bench.audit import run_audit
    from expunge.report.grid import write_grid_report
    from expunge.training.recipe import Recipe
    from expunge.training.scenario import Scenario
    from expunge.training.store import PopulationCache

    parts = []
    for seed in (0, 1):
        recipe = Recipe(model_kwargs={"hidden": [16]}, epochs=2, seed=seed)
        scenario = Scenario.build("gaussians", "random:0.1", recipe=recipe, seed=seed,
                                  cache=PopulationCache(tmp_path / "cache"), n_train=300, n_test=200)
        report = run_audit(scenario, ["retrain", "finetune"], members=2, shadow_members=0, seed=seed)
        hyperparameters = {m["method"]: m.get("hyperparameters", {}) for m in report.data["methods"]}
        parts.append(results_frame(report.rows, "gaussians", "random:0.1", 2, seed, hyperparameters))
    data = pd.concat(parts, ignore_index=True)
    with pytest.warns(FewSeedsWarning):
        board = leaderboard(data)
    assert set(board["method"]) == {"retrain", "finetune"} and set(board["n_seeds"]) == {2}
    headline = data[data["headline"] > 0]
    assert set(board["metric"]) == {metric_key(m, s) for m, s in zip(headline["metric"], headline["split"])}
    assert {"accuracy/forget", "klom_p95/forget", "cost_gradients"} <= set(board["metric"])
    finite = board[np.isfinite(board["ci_low"])]
    assert (finite["ci_low"] <= finite["mean"] + 1e-12).all() and (finite["mean"] <= finite["ci_high"] + 1e-12).all()
    # retraining costs exactly one retraining; each metric has a best method
    assert cell(board, "retrain", "cost_gradients")["relative"] == pytest.approx(1.0)
    assert cell(board, "finetune", "accuracy/forget")["relative_kind"] == "difference"
    assert board.groupby("metric")["best"].sum().max() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSeedsWarning)
        text = write_grid_report(data, tmp_path / "grid.html").read_text(encoding="utf-8")
    assert '<figure id="heatmap-klom-p95-forget">' in text and '<figure id="frontier-gaussians' in text


def test_grid_report_has_a_stress_section_with_relearning_curves_per_forget_rule(tmp_path):
    from expunge.report.grid import write_grid_report

    def curve(method, values, oracle, rule):
        return [row for t, v, o in zip((0, 1, 5), values, oracle)
                for row in rows(method, {"metric": f"relearn_accuracy_{t}", "split": "forget",
                                         "reference_kind": "oracle", "label": f"FA after {t}", "headline": 0,
                                         "unit": "%", "definition": "relearn@test"}, [v, v], [o, o], rule=rule)]

    data = frame(rows("salun", KLOM, [2.0, 2.1], [1.0, 1.0]), rows("salun", KLOM, [3.0, 3.1], [1.0, 1.0],
                                                                   rule="memorized:0.1"),
                 curve("salun", [10, 40, 60], [10, 12, 15], "random:0.1"),
                 curve("salun", [5, 50, 70], [5, 6, 8], "memorized:0.1"))
    html = write_grid_report(data, tmp_path / "grid.html").read_text(encoding="utf-8")
    assert 'id="stress-section"' in html
    assert html.count('id="relearning-') == 2  # one chart per forget rule
    assert "oracle 15%" in html or "oracle 15.0%" in html  # the oracle's curve, after the last step, in the alt text
    plain = write_grid_report(frame(rows("salun", KLOM, [2.0, 2.1], [1.0, 1.0])), tmp_path / "plain.html")
    assert 'id="stress-section"' not in plain.read_text(encoding="utf-8")  # nothing to show, no empty section


def test_stress_section_of_real_audits_on_two_forget_rules(tmp_path):
    """Tiny real audits (gaussians, N = 2, 2 epochs) on a random and a hard-for-finetune forget set: the section
    shows the rules side by side and each rule's relearning curves with the oracle's."""
    from expunge.bench.audit import run_audit
    from expunge.report.grid import stress_board, write_grid_report
    from expunge.training.recipe import Recipe
    from expunge.training.scenario import Scenario
    from expunge.training.store import PopulationCache

    recipe, cache, parts = Recipe(model_kwargs={"hidden": [16]}, epochs=2), PopulationCache(tmp_path / "cache"), []
    for rule in ("random:0.1", "hard:finetune:0.1"):
        scenario = Scenario.build("gaussians", rule, recipe=recipe, cache=cache, n_train=300, n_test=100)
        report = run_audit(scenario, ["original", "finetune"], members=2, shadow_members=0,
                           metrics=["accuracy", "klom", "relearning"])
        parts.append(results_frame(report.rows, "gaussians", rule, 2, 0, {}))
    data = pd.concat(parts, ignore_index=True)
    board = stress_board(data)
    assert set(board["forget_rule"]) == {"random:0.1", "hard:finetune:0.1"}
    assert set(board["metric"]) == {"accuracy/forget", "klom_p95/forget", "relearn_excess/forget"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSeedsWarning)
        html = write_grid_report(data, tmp_path / "stress.html").read_text(encoding="utf-8")
    section = html[html.index('id="stress-section"'):]
    table = section[section.index('id="stress-table-gaussians-2"'):section.index("</table>")]
    assert table.index("random:0.1") < table.index("hard:finetune:0.1")  # one column group per rule
    assert table.count("<tr>") == 4 and "finetune" in table and "floor" in table and "vs oracle" in table
    for rule in ("random-0-1", "hard-finetune-0-1"):
        figure = section[section.index(f'id="relearning-gaussians---{rule}'):]
        alt = re.search(r'alt="([^"]*)"', figure).group(1)
        assert "original:" in alt and "finetune:" in alt and "oracle" in alt  # both curves and the oracle's
    alone = write_grid_report(parts[0], tmp_path / "one.html").read_text(encoding="utf-8")
    assert 'id="stress-table-' not in alone and 'id="relearning-' in alone  # one rule: curves, no side by side
