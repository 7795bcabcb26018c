"""CLI for exact unlearning and the deletion ledger: ``expunge sisa train``, ``expunge forget``, ``expunge ledger``."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from expunge.cli.progress import console, friendly_errors, progress_bars
from expunge.errors import ExpungeError

sisa_app = typer.Typer(no_args_is_help=True, help="SISA: sharded, sliced training whose deletions are exact.")
closed_form_app = typer.Typer(no_args_is_help=True, help="Ridge heads on frozen features: instant exact deletion.")
ledger_app = typer.Typer(no_args_is_help=True, help="The deletion ledger of a model folder.")


@sisa_app.command("train")
@friendly_errors
def sisa_train(dataset: str = typer.Option("mnist1d", help="built-in dataset (see `expunge datasets`)"),
               shards: int = typer.Option(4, help="S: disjoint shards, one model each"),
               slices: int = typer.Option(1, help="R: slices per shard, trained in sequence with a checkpoint each"),
               out: Path = typer.Option(..., help="new folder for the model, its ledger and receipts"),
               epochs: int | None = typer.Option(None, help="override the recipe's epochs"),
               seed: int = typer.Option(0, help="seed of initialisation and of the shard/slice assignment"),
               aggregate: str = typer.Option("mean", help="mean (of probabilities) or vote (majority)"),
               device: str = typer.Option("cpu", help="cpu or cuda")) -> None:
    """Train a SISA model and start a model folder that serves deletion requests exactly."""
    from expunge.data import load_dataset
    from expunge.exact import train_sisa_folder

    with progress_bars() as bar:
        folder, model = train_sisa_folder(out, dataset, shards, slices, epochs, seed, aggregate, device=device,
                                          progress=bar(f"SISA {shards} shards x {slices} slices"))
    test = load_dataset(dataset).test
    line = f"SISA model in {folder.path}: {shards} shards x {slices} slices"
    if test.task == "classification":
        line += f", test accuracy {float(model.accuracy(test)[0]):.1f}%"
    console.print(line)
    console.print(f"delete with: expunge forget {folder.path} --ids @ids.txt")


@closed_form_app.command("fit")
@friendly_errors
def closed_form_fit(dataset: str = typer.Option("mnist1d", help="built-in dataset (see `expunge datasets`)"),
                    out: Path = typer.Option(..., help="new folder for the model, its ledger and receipts"),
                    l2: float = typer.Option(1.0, help="ridge penalty"),
                    seed: int = typer.Option(0, help="seed of the random-feature backbone"),
                    model: str | None = typer.Option(None, help="backbone architecture (default: the "
                                                                   "dataset recipe's)")) -> None:
    """Fit a ridge head on random features of a built-in architecture; deletions are exact and instant."""
    from expunge.data import load_dataset
    from expunge.exact import fit_closed_form_folder

    folder, fitted = fit_closed_form_folder(out, dataset, l2, seed, model)
    test = load_dataset(dataset).test
    line = f"closed-form model in {folder.path}: ridge head (l2 {l2}) on {fitted.head.width} random features"
    if test.task == "classification":
        line += f", test accuracy {fitted.accuracy(test):.1f}%"
    console.print(line)
    console.print(f"delete with: expunge forget {folder.path} --ids @ids.txt")


def _lazy(bar, description: str):
    """A progress callback whose bar appears on its first report (a refused request shows none)."""
    update = None

    def report(done: int, total: int) -> None:
        nonlocal update
        if update is None:
            update = bar(description)
        update(done, total)

    return report


def _ids(spec: str) -> list[int]:
    from expunge.data.forget import read_id_file

    if spec.startswith("@"):
        return read_id_file(spec[1:])
    try:
        return [int(part) for part in spec.replace(",", " ").split()]
    except ValueError:
        raise ExpungeError(f"--ids {spec!r}: give comma-separated integer IDs, or @FILE") from None


@friendly_errors
def forget(folder: Path = typer.Argument(..., help="a model folder (from `expunge sisa train`)"),
           ids: str = typer.Option(..., help="IDs to delete: @FILE (one per line, or a JSON list) or 1,2,3"),
           method: str | None = typer.Option(None, help="approximate method for a plain model folder; exact "
                                                           "models delete exactly"),
           request_id: str | None = typer.Option(None, help="your ID for the request (default: from the IDs); "
                                                               "a request ID is served once"),
           param: list[str] = typer.Option([], help="method hyperparameter name=value (repeatable)")) -> None:
    """Delete IDs from a model folder's model, append the request to its ledger and write a receipt."""
    from expunge.cli.main import _parse_params
    from expunge.exact import ModelFolder

    model_folder = ModelFolder.open(folder)
    wanted = _ids(ids)
    with progress_bars() as bar:
        receipt = model_folder.forget(wanted, request_id=request_id, method=method,
                                      hyperparameters=_parse_params(param), progress=_lazy(bar, "retraining"))
    console.print(str(receipt), highlight=False)
    cost = receipt.data["cost"]
    if "shards_retrained" in cost:
        console.print(f"cost: {cost['example_gradients']:.0f} example gradients, "
                      f"{cost['ratio_to_full']:.3f} x retraining the whole model "
                      f"({cost['shards_retrained']} shard(s) retrained)")
    elif "update" in cost:
        console.print(f"cost: no gradients, {cost['wall_time_s'] * 1000:.1f} ms ({cost['update']} update of the head)")


@ledger_app.command("show")
@friendly_errors
def ledger_show(folder: Path = typer.Argument(..., help="a model folder"),
                as_json: bool = typer.Option(False, "--json", help="print the entries as JSON")) -> None:
    """List the requests a model folder has served."""
    from expunge.exact import ModelFolder

    with ModelFolder.open(folder).ledger() as ledger:
        entries = ledger.entries()
    if as_json:
        console.print_json(json.dumps([e.to_json() for e in entries]))
        return
    table = Table(title=f"deletion ledger of {folder}")
    for column in ("seq", "request", "time (UTC)", "kind", "method", "IDs", "model after", "cost x full", "hash"):
        table.add_column(column)
    for e in entries:
        ratio = e.cost.get("ratio_to_full")
        table.add_row(str(e.seq), e.request_id, e.time[:19].replace("T", " "), e.kind, e.method, str(e.forget_count),
                      e.model_after[:12], "-" if ratio is None else f"{ratio:.3f}", e.entry_hash[:12])
    console.print(table)


@ledger_app.command("verify")
@friendly_errors
def ledger_verify(folder: Path = typer.Argument(..., help="a model folder")) -> None:
    """Recompute the ledger's hash chain and check the model against its last entry."""
    from expunge.exact import ModelFolder

    result, findings = ModelFolder.open(folder).verify()
    console.print(str(result), style="green" if result.ok else "bold red", highlight=False)
    for finding in findings:
        console.print(finding, style="yellow", highlight=False)
    if not result.ok or any("do not match" in f or "missing" in f for f in findings):
        raise typer.Exit(1)
