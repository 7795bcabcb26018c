"""The ``expunge`` command line. Each command is one call of the Python API."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.table import Table

from expunge.cli.progress import console, friendly_errors, progress_bars
from expunge.errors import ExpungeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="expunge: machine unlearning for PyTorch, audited against retrained models.")


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN-safe


def _mean_std(values: torch.Tensor) -> str:
    if values.numel() == 1:
        return _fmt(float(values[0]))
    return f"{float(values.mean()):.1f} ± {float(values.std()):.1f}"


def _parse_params(params: list[str]) -> dict[str, str]:
    parsed = {}
    for item in params:
        if "=" not in item:
            raise ExpungeError(f"--param {item!r} must look like name=value (e.g. --param lr=0.01)")
        key, value = item.split("=", 1)
        parsed[key.strip()] = value.strip()
    return parsed


@app.command()
@friendly_errors
def datasets() -> None:
    """List the built-in datasets (all offline) with their sizes and task."""
    from expunge.data import dataset_info

    table = Table(title="built-in datasets")
    for column in ("name", "task", "train", "test", "input shape", "classes", "description"):
        table.add_column(column)
    for row in dataset_info():
        table.add_row(row["name"], row["task"], str(row["n_train"]), str(row["n_test"]),
                      str(row["input_shape"]), str(row["num_classes"] or "-"), row["description"])
    console.print(table)


@app.command()
@friendly_errors
def models() -> None:
    """List the built-in architectures."""
    from expunge.models import MODELS, model_names

    table = Table(title="built-in models (any nn.Module works from Python)")
    for column in ("name", "inputs", "description"):
        table.add_column(column)
    for name in model_names():
        table.add_row(name, MODELS[name].input_kinds, MODELS[name].description)
    console.print(table)


@app.command()
@friendly_errors
def methods() -> None:
    """List the registered unlearning methods."""
    from expunge.methods.registry import method_table

    table = Table(title="unlearning methods")
    for column in ("name", "kind", "needs retain set", "needs labels", "summary", "paper"):
        table.add_column(column, overflow="fold")
    for row in method_table():
        table.add_row(row["name"], row["kind"], "yes" if row["needs_retain"] else "no",
                      "yes" if row["needs_labels"] else "no", row["summary"], row["paper"])
    console.print(table)


def _scenario(dataset: str, forget: str, model: Optional[str], epochs: Optional[int], seed: int, device: str):
    from expunge.training.recipe import default_recipe
    from expunge.training.scenario import Scenario

    recipe = default_recipe(dataset)
    if model:
        recipe = recipe.with_(model=model, model_kwargs={})
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    return Scenario.build(dataset, forget, recipe, seed=seed, device=device)


def _accuracy_rows(scenario, population) -> dict[str, torch.Tensor]:
    from expunge.training.engine import accuracy

    train = scenario.split.train
    return {"forget": accuracy(population, train, scenario.forget.forget_positions),
            "retain": accuracy(population, train, scenario.forget.retain_positions),
            "test": accuracy(population, scenario.split.test)}


def _load(bar, scenario, role: str, members: int):
    callback = bar(f"{role} ({members} members)")
    if role == "original":
        return scenario.original(members, progress=callback)
    return scenario.oracle(members, progress=callback)


@app.command()
@friendly_errors
def train(dataset: str = typer.Option("mnist1d", help="built-in dataset (see `expunge datasets`)"),
          model: Optional[str] = typer.Option(None, help="architecture (default: the dataset's recipe)"),
          members: int = typer.Option(8, min=1, help="population size K"),
          epochs: Optional[int] = typer.Option(None, help="override the recipe's epochs"),
          seed: int = typer.Option(0, help="base seed; member i uses seed + i"),
          device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Train a population (cached) and print each member's accuracy."""
    from expunge.training.engine import accuracy
    from expunge.training.recipe import default_recipe
    from expunge.training.scenario import Scenario

    recipe = default_recipe(dataset).with_(seed=seed)
    if model:
        recipe = recipe.with_(model=model, model_kwargs={})
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    scenario = Scenario.build(dataset, "random:1", recipe, device=device)
    with progress_bars() as bar:
        population, cost, hit = _load(bar, scenario, "original", members)
    train_acc, test_acc = accuracy(population, scenario.split.train), accuracy(population, scenario.split.test)
    table = Table(title=f"{dataset} / {recipe.model}: {members} members"
                        f" ({'from cache' if hit else f'trained in {cost.wall_time_s:.1f}s'})")
    for column in ("member", "seed", "train acc %", "test acc %"):
        table.add_column(column, justify="right")
    for i in range(members):
        table.add_row(str(i), str(population.seeds[i]), _fmt(float(train_acc[i])), _fmt(float(test_acc[i])))
    table.add_row("mean ± std", "", _mean_std(train_acc), _mean_std(test_acc), style="bold")
    console.print(table)


@app.command()
@friendly_errors
def unlearn(dataset: str = typer.Option("mnist1d", help="built-in dataset"),
            forget: str = typer.Option("random:0.1", help="forget-set rule: random:0.1, random:200, class:3, "
                                                          "subclass:3, ids:1,2,3"),
            method: str = typer.Option("finetune", help="unlearning method (see `expunge methods`)"),
            param: list[str] = typer.Option([], help="method hyperparameter name=value (repeatable)"),
            members: int = typer.Option(4, min=1, help="population size K"),
            seed: int = typer.Option(0, help="method seed"),
            device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Unlearn a forget set from a (cached) original population and compare with the oracle."""
    from expunge.methods.registry import get_method, unlearn_population

    hyperparameters = _parse_params(param)
    cls = get_method(method)
    cls.make_hyperparameters(**hyperparameters)  # fail fast, before any training
    scenario = _scenario(dataset, forget, None, None, 0, device)
    with progress_bars() as bar:
        original, _, _ = _load(bar, scenario, "original", members)
        oracle, oracle_cost, _ = _load(bar, scenario, "oracle", members)
        unlearned, cost = unlearn_population(original, scenario.split.train, scenario.forget_mask,
                                             scenario.retain_mask, method, scenario.recipe, seed,
                                             progress=bar(f"{method}"), **hyperparameters)
    rows = {"original": _accuracy_rows(scenario, original), method: _accuracy_rows(scenario, unlearned),
            "oracle (retrain)": _accuracy_rows(scenario, oracle)}
    table = Table(title=f"{scenario.name}: {len(scenario.forget)} forget examples, {members} members "
                        "(accuracy %, mean ± std)")
    for column in ("model", "forget acc", "retain acc", "test acc"):
        table.add_column(column, justify="right")
    for name, acc in rows.items():
        table.add_row(name, _mean_std(acc["forget"]), _mean_std(acc["retain"]), _mean_std(acc["test"]),
                      style="bold" if name == method else None)
    console.print(table)
    ratios = cost.ratios(oracle_cost)
    console.print(f"cost of {method}: {cost.example_gradients:,.0f} example gradients per member "
                  f"= {ratios['example_gradients']:.3f}x retraining; wall time {cost.wall_time_per_member_s:.2f}s "
                  f"per member = {ratios['wall_time']:.3f}x retraining")
    for note in cost.notes:
        console.print(f"[yellow]note:[/] {note}")


DEMO_METHODS = ["original", "retrain", "finetune", "gradient_ascent", "neggrad_plus", "random_label",
                "boundary_shrink", "l1_sparse", "salun", "ssd", "scrub", "bad_teacher"]
QUICK_METHODS = ["original", "retrain", "finetune", "gradient_ascent", "neggrad_plus", "salun"]


def _run_audit(scenario, methods, members: int, shadows: Optional[int], out: Path, resolution: str) -> None:
    from expunge.bench.audit import audit as run_audit
    from expunge.cli.leaderboard import leaderboard

    start = time.perf_counter()
    with progress_bars() as bar:
        report = run_audit(scenario, methods, members=members, shadow_members=shadows, resolution=resolution,
                           progress=bar)
    json_path, html_path = report.write(out)
    console.print(leaderboard(report.to_json()))
    console.print(f"report: {html_path}  (data: {json_path})  in {time.perf_counter() - start:.0f}s")


@app.command()
@friendly_errors
def audit(dataset: str = typer.Option("mnist1d", help="built-in dataset"),
          forget: str = typer.Option("random:0.1", help="forget-set rule (random:0.1, class:3, subclass:3, ids:...)"),
          method: list[str] = typer.Option(["finetune"], help="method to audit (repeatable)"),
          param: list[str] = typer.Option([], help="hyperparameter name=value for the method (one method only)"),
          members: int = typer.Option(32, help="N: members of the original, oracle and second oracle populations"),
          shadows: Optional[int] = typer.Option(None, help="shadow models for U-LiRA (default: N, at least 8; 0 skips)"),
          epochs: Optional[int] = typer.Option(None, help="override the recipe's epochs"),
          out: Path = typer.Option(Path("expunge-out/audit"), help="folder for report.json and report.html"),
          device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Audit methods against oracle populations; writes DIR/report.json and DIR/report.html."""
    hyperparameters = _parse_params(param)
    if hyperparameters and len(method) != 1:
        raise ExpungeError("--param applies to a single --method; audit methods one at a time to set them")
    methods = {method[0]: hyperparameters} if hyperparameters else list(method)
    scenario = _scenario(dataset, forget, None, epochs, 0, device)
    _run_audit(scenario, methods, members, shadows, out, "full")


@app.command()
@friendly_errors
def demo(quick: bool = typer.Option(False, "--quick", help="low resolution (N = 8, 6 methods), about a minute"),
         out: Path = typer.Option(Path("expunge-out/demo"), help="folder for report.json and report.html"),
         members: Optional[int] = typer.Option(None, help="override N (default 32, or 8 with --quick)"),
         device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """The main job: MNIST-1D, random 10% forget set, a leaderboard of methods audited against retraining."""
    n = members or (8 if quick else 32)
    methods = QUICK_METHODS if quick else DEMO_METHODS
    scenario = _scenario("mnist1d", "random:0.1", None, None, 0, device)
    if quick:
        console.print("[bold yellow]LOW RESOLUTION[/] (--quick): N = 8 models per population, "
                      "6 methods. F's ceiling is ln(7) and KLoM histograms are coarse: use the full demo for "
                      "figures you report.")
    _run_audit(scenario, methods, n, n, out, "quick" if quick else "full")


if __name__ == "__main__":  # pragma: no cover
    app()
