"""The ``expunge`` command line. Each command is one call of the Python API."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch
import typer
from rich.table import Table

from expunge.cli.progress import console, error_console, friendly_errors, progress_bars
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


def _parse_options(options: list[str]) -> dict[str, Any]:
    """``--dataset-option key=value`` pairs, numbers as numbers (num_authors=20 -> 20)."""
    parsed: dict[str, Any] = {}
    for item in options:
        if "=" not in item:
            raise ExpungeError(f"--dataset-option {item!r} must look like name=value (e.g. num_authors=20)")
        key, text = (part.strip() for part in item.split("=", 1))
        for kind in (int, float):
            try:
                parsed[key] = kind(text)
                break
            except ValueError:
                continue
        else:
            parsed[key] = text
    return parsed


def _language_model_settings(methods: Any, scenario, out: Path) -> Any:
    """Fill in what LLM methods need from the data: ``idk`` writes its refusals with the data's tokenizer."""
    corpus = scenario.split.info.get("corpus")
    names = list(methods) if not isinstance(methods, dict) else list(methods.keys())
    if corpus is None or "idk" not in names:
        return methods
    spec = dict(methods) if isinstance(methods, dict) else {name: {} for name in names}
    if not spec.get("idk", {}).get("tokenizer"):
        path = corpus.save_tokenizer(scenario.split, out)
        spec["idk"] = dict(spec.get("idk", {})) | {"tokenizer": str(path)}
    return spec


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
def methods(filters: list[str] = typer.Option([], "--filter", help="only methods matching every filter given "
                                               "(repeatable): retain-free, label-free, classification, regression, "
                                               "random, class, subclass")) -> None:
    """List the registered unlearning methods and the settings each supports."""
    from expunge.methods.registry import METHODS, method_table

    rows = method_table(filters)
    title = "unlearning methods" + (f" ({', '.join(filters)})" if filters else "")
    table = Table(title=title)
    for column in ("name", "kind", "retain set", "labels", "tasks", "forget sets"):
        table.add_column(column, no_wrap=True)  # the settings stay on one line, so a row reads at a glance
    for column in ("summary", "paper", "from"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["kind"], "needed" if row["needs_retain"] else "not used",
                      "needed" if row["needs_labels"] else "not used", ",".join(row["tasks"]),
                      ",".join(row["forget_sets"]), row["summary"], row["paper"], row["origin"])
    console.print(table)
    if not rows:
        console.print(f"no registered method matches {' and '.join(filters)}")
    for problem in METHODS.problems:
        error_console.print(f"[yellow]warning:[/] {problem}", highlight=False)


def _scenario(dataset: str, forget: str, epochs: Optional[int], device: str, model: Optional[str] = None,
              recipe_file: Optional[Path] = None, data_root: Optional[Path] = None,
              dataset_options: Optional[dict[str, Any]] = None):
    from expunge.bench.grid import make_user_model, read_recipe_file
    from expunge.training.recipe import default_recipe
    from expunge.training.scenario import Scenario

    recipe = default_recipe(dataset)
    if recipe_file is not None:
        recipe = read_recipe_file(recipe_file, recipe)
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    options = dict(dataset_options or {})
    if data_root is not None:
        if dataset != "cifar10":
            raise ExpungeError(f"--data-root is the CIFAR-10 folder; dataset {dataset!r} needs none")
        options["root"] = str(data_root)
    if model is not None:
        recipe = recipe.with_(model=model, model_kwargs={})
    scenario = Scenario.build(dataset, forget, recipe, device=device, **options)
    if model is not None:
        train = scenario.split.train
        outputs = train.num_classes if train.task == "classification" else 1
        scenario.model = make_user_model(model, {}, train.input_shape, outputs)
    return scenario


@app.command()
@friendly_errors
def train(dataset: str = typer.Option("mnist1d", help="built-in dataset (see `expunge datasets`)"),
          model: Optional[str] = typer.Option(None, help="architecture (default: the dataset's recipe)"),
          members: int = typer.Option(8, min=1, help="population size K"),
          epochs: Optional[int] = typer.Option(None, help="override the recipe's epochs"),
          seed: int = typer.Option(0, help="base seed; member i uses seed + i"),
          device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Train a population (cached) and print each member's accuracy."""
    from expunge.bench.workflows import train_original

    with progress_bars() as bar:
        result = train_original(dataset, members, model, epochs, seed, device, progress=bar)
    unit = "acc %" if result.has_accuracy else "-loss"
    table = Table(title=f"{dataset} / {result.scenario.recipe.model}: {members} members")
    for column in ("member", "seed", f"train {unit}", f"test {unit}"):
        table.add_column(column, justify="right")
    for i in range(members):
        table.add_row(str(i), str(result.population.seeds[i]), _fmt(float(result.train_accuracy[i])),
                      _fmt(float(result.test_accuracy[i])))
    table.add_row("mean ± std", "", _mean_std(result.train_accuracy), _mean_std(result.test_accuracy), style="bold")
    console.print(table)
    loaded, trained = len(result.cache.loaded), len(result.cache.trained)
    if not trained:
        console.print(f"all {members} members from cache ({result.scenario.cache.root})")
    else:
        console.print(f"{trained} members trained now ({result.cost.wall_time_s:.1f}s of training in all"
                      + (f"), {loaded} from cache" if loaded else ")"))


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
    from expunge.bench.plan import method_plan
    from expunge.bench.workflows import headline_statistic, unlearn_scenario

    hyperparameters = _parse_params(param)
    method_plan(method, hyperparameters)  # fail fast, before any training
    scenario = _scenario(dataset, forget, None, device)
    with progress_bars() as bar:
        result = unlearn_scenario(scenario, method, members, seed, progress=bar, **hyperparameters)
    statistic = headline_statistic(scenario.split.task)
    short = "acc" if statistic == "accuracy %" else "loss"
    table = Table(title=f"{scenario.name}: {len(scenario.forget)} forget examples, {members} members "
                        f"({statistic}, mean ± std)")
    for column in ("model", f"forget {short}", f"retain {short}", f"test {short}"):
        table.add_column(column, justify="right")
    for name, acc in result.accuracy.items():
        table.add_row(name, _mean_std(acc["forget"]), _mean_std(acc["retain"]), _mean_std(acc["test"]),
                      style="bold" if name == method else None)
    console.print(table)
    cost = result.cost
    console.print(f"cost of {method}: {cost.example_gradients:,.0f} example gradients per member "
                  f"= {result.gradient_ratio:.3f}x retraining; wall time {cost.wall_time_per_member_s:.2f}s "
                  f"per member = {result.time_ratio:.3f}x retraining ({result.retrain.measured})")
    for note in cost.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command()
@friendly_errors
def tune(dataset: str = typer.Option("mnist1d", help="built-in dataset"),
         forget: str = typer.Option("random:0.1", help="forget-set rule of the scenario to tune for"),
         method: str = typer.Option(..., help="method to tune (see `expunge methods`)"),
         trials: int = typer.Option(20, help="trials the study should have (a resumed study runs the missing ones)"),
         members: int = typer.Option(16, help="models per validation population"),
         budget: float = typer.Option(0.1, help="largest per-request cost, example gradients relative to retraining"),
         seed: int = typer.Option(0, help="seed of the validation forget set and the sampler"),
         device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Tune a method's hyperparameters on a validation forget set disjoint from the evaluation one (Optuna)."""
    from expunge.bench.tune import tune as run_tune

    scenario = _scenario(dataset, forget, None, device)
    with progress_bars() as bar:
        result = run_tune(scenario, method, trials=trials, members=members, budget=budget, seed=seed, progress=bar)
    table = Table(title=f"{method} on {scenario.name}: validation forget set {result.validation_rule}, "
                        f"{members} models per population")
    for column in ("trial", "hyperparameters", "KLoM forget / floor", "retain acc (oracle)", "cost", "objective"):
        table.add_column(column, overflow="fold")
    best_number = min(result.history, key=lambda t: t["value"])["number"] if result.history else None
    for t in result.history:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        retain = f"{t['retain_accuracy']:.1f} ({t['oracle_retain_accuracy']:.1f})" if "retain_accuracy" in t else "-"
        table.add_row(str(t["number"]) + (" (defaults)" if t["number"] == 0 else ""), params,
                      f"{t['klom_forget_over_floor']:.2f}" if "klom_forget_over_floor" in t else t.get("error", "-"),
                      retain, f"{t['cost']:.3f}" if "cost" in t else "-", f"{t['value']:.3f}",
                      style="bold green" if t["number"] == best_number else None)
    console.print(table)
    params = " ".join(f"--param {k}={v}" for k, v in result.hyperparameters.items())
    console.print(f"best: {dict(result.hyperparameters)} (objective {result.best_value:.3f}; defaults "
                  f"{result.default_value:.3f}); study {result.study_name} in {result.storage}")
    console.print(f"audit it on the evaluation forget set: expunge audit --dataset {dataset} --forget {forget} "
                  f"--method {method} {params}")


def _demo_methods(quick: bool, task: str = "classification") -> list[str]:
    """The demo's methods for ``task`` data, from the registry's metadata: references first, then the rest by name."""
    from expunge.methods.registry import METHODS

    wanted = ("quick",) if quick else ("quick", "full")
    chosen = [(cls.kind != "reference", name) for name, cls in METHODS.items()
              if cls.demo in wanted and task in cls.tasks]
    order = {"original": 0, "retrain": 1}
    return [name for _, name in sorted(chosen, key=lambda item: (item[0], order.get(item[1], 2), item[1]))]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExpungeError(f"--out {out} is a file: pass a folder for report.json and report.html")


def _run_audit(scenario, methods, members: int, shadows: Optional[int], out: Path, resolution: str) -> None:
    import logging

    from expunge.bench.audit import run_audit
    from expunge.cli.leaderboard import leaderboard

    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "audit.log"
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("expunge")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        with progress_bars() as bar:
            report = run_audit(scenario, methods, members=members, shadow_members=shadows, resolution=resolution,
                               progress=bar)
    finally:
        logger.removeHandler(handler)
        handler.close()
    json_path, html_path = report.write(out)
    console.print(leaderboard(report))
    failed = [m for m in report.data["methods"] if m["status"] != "ok"]
    for entry in failed:
        where = " (traceback in the log)" if entry.get("traceback") else ""
        error_console.print(f"[bold red]{entry['method']} failed:[/] {entry['error']}{where}", highlight=False)
    console.print(f"report: {html_path}  (data: {json_path}, log: {log_path})  in {time.perf_counter() - start:.0f}s")


@app.command()
@friendly_errors
def audit(dataset: str = typer.Option("mnist1d", help="built-in dataset"),
          forget: str = typer.Option("random:0.1", help="forget-set rule (random:0.1, class:3, subclass:3, ids:...)"),
          method: list[str] = typer.Option(["finetune"], help="method to audit (repeatable)"),
          param: list[str] = typer.Option([], help="hyperparameter name=value for the method (one method only)"),
          members: int = typer.Option(32, help="N: members of the original, oracle and second oracle populations"),
          shadows: Optional[int] = typer.Option(None, help="shadow models for U-LiRA (default: N, at least 8; 0 skips)"),
          epochs: Optional[int] = typer.Option(None, help="override the recipe's epochs"),
          out: Path = typer.Option(Path("expunge-out/audit"), help="folder for report.json, report.html, audit.log"),
          model: Optional[str] = typer.Option(None, help="your nn.Module class or factory, package.module:Name "
                                                         "(default: the recipe's built-in architecture)"),
          recipe: Optional[Path] = typer.Option(None, help="a TOML file of recipe fields (optimizer, lr, schedule, "
                                                           "epochs, batch_size, ...), at the top or under [recipe]"),
          data_root: Optional[Path] = typer.Option(None, help="the CIFAR-10 folder (data_batch_1..5, test_batch) "
                                                              "for --dataset cifar10"),
          dataset_option: list[str] = typer.Option([], help="a dataset option name=value (repeatable), e.g. "
                                                            "num_authors=20 for fictitious_authors"),
          device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Audit methods against oracle populations; writes DIR/report.json, DIR/report.html and DIR/audit.log."""
    from expunge.bench.plan import method_plan

    _check_out(out)
    hyperparameters = _parse_params(param)
    if hyperparameters and len(method) != 1:
        raise ExpungeError("--param applies to a single --method; audit methods one at a time to set them")
    methods = {method[0]: hyperparameters} if hyperparameters else list(method)
    method_plan(methods, {})  # fail fast on names and hyperparameters, before any training
    scenario = _scenario(dataset, forget, epochs, device, model, recipe, data_root, _parse_options(dataset_option))
    out.mkdir(parents=True, exist_ok=True)
    _run_audit(scenario, _language_model_settings(methods, scenario, out), members, shadows, out, "full")


@app.command()
@friendly_errors
def demo(quick: bool = typer.Option(False, "--quick", help="low resolution (N = 8, the quick methods), about a minute"),
         out: Path = typer.Option(Path("expunge-out/demo"), help="folder for report.json, report.html, audit.log"),
         members: Optional[int] = typer.Option(None, help="override N (default 32, or 8 with --quick; "
                                                          "--task lm: 8, or 4 with --quick)"),
         task: str = typer.Option("classification", help="classification (MNIST-1D) or lm (tiny GPTs forgetting "
                                                         "fictitious authors)"),
         device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """The main job: MNIST-1D, random 10% forget set, a leaderboard of methods audited against retraining."""
    _check_out(out)
    if task not in ("classification", "lm"):
        raise ExpungeError(f"unknown demo task {task!r}: use classification or lm")
    if task == "lm":
        _language_model_demo(quick, out, members, device)
        return
    n = members or (8 if quick else 32)
    methods = _demo_methods(quick)
    scenario = _scenario("mnist1d", "random:0.1", None, device)
    if quick:
        console.print(f"[bold yellow]LOW RESOLUTION[/] (--quick): N = {n} models per population, "
                      f"{len(methods)} methods. F's ceiling is ln(N - 1) and KLoM histograms are coarse: use the "
                      "full demo for figures you report.")
    _run_audit(scenario, methods, n, n, out, "quick" if quick else "full")


# The language-model demo: 20 fictitious authors (20 facts each), 40 world facts and 5 unseen authors, gpt_tiny (2 layers, d_model
# 64) with the dataset's recipe (Adam 3e-3, 20 epochs, batch 32): about 3.5 s per model on 2 cores, and the
# training answers are learned (exact match ~100%) while unseen authors' are not (0%).
LM_DEMO_DATA = {"num_authors": 20, "world_facts": 40, "unseen_authors": 5}


def _language_model_demo(quick: bool, out: Path, members: Optional[int], device: str) -> None:
    n = members or (4 if quick else 8)
    methods = _demo_methods(False, "causal_lm")
    if quick:  # the oracle population is the reference already; finetune and gradient_ascent are the
        # classification baselines (at their defaults they barely move a language model: the full demo shows it)
        methods = [m for m in methods if m not in ("retrain", "finetune", "gradient_ascent")]
    scenario = _scenario("fictitious_authors", "authors:0.05", None, device, dataset_options=LM_DEMO_DATA)
    shadows = 0 if quick else max(n, 8)
    console.print(f"language models: gpt_tiny on fictitious_authors ({LM_DEMO_DATA['num_authors']} authors, "
                  f"{len(scenario.split.train)} training facts), forgetting {len(scenario.forget)} facts "
                  f"(authors:0.05); N = {n}, {shadows or 'no'} shadow models, {len(methods)} methods")
    if quick:
        console.print(f"[bold yellow]LOW RESOLUTION[/] (--quick): N = {n} models per population and no U-LiRA: "
                      "KLoM and the KS p-values are coarse; use the full demo for figures you report.")
    out.mkdir(parents=True, exist_ok=True)
    _run_audit(scenario, _language_model_settings(methods, scenario, out), n, shadows, out,
               "quick" if quick else "full")


from expunge.cli.bench import bench as _bench, results as _results  # noqa: E402 - after app
from expunge.cli.exact import closed_form_app, forget as _forget, ledger_app, sisa_app  # noqa: E402 - after app

app.add_typer(sisa_app, name="sisa")
app.add_typer(closed_form_app, name="closed-form")
app.add_typer(ledger_app, name="ledger")
app.command("forget")(_forget)
app.command("bench")(_bench)
app.command("results")(_results)

if __name__ == "__main__":  # pragma: no cover
    app()
