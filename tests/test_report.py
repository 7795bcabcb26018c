"""The HTML audit report: content a reviewer relies on, robustness, atomic writing, and a real browser."""
from __future__ import annotations

import base64
import copy
import io
import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import expunge.report.html as report_html
from expunge.errors import ExpungeError
from expunge.report import render_html, write_report

SAMPLE_PATH = Path(__file__).parent / "fixtures" / "report_sample.json"


@pytest.fixture
def sample() -> dict:
    return json.loads(SAMPLE_PATH.read_text())


class Page(HTMLParser):
    """What a reader of the page sees: tables (by id) as rows of cell texts, images, links, tags, text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str | None, list[list[str]]] = {}
        self.images: list[dict] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value) of every src / href
        self.tags: list[str] = []
        self.text: list[str] = []
        self._tables: list[str | None] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.references += [(tag, key, attrs[key]) for key in ("src", "href") if key in attrs]
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._tables.append(attrs.get("id"))
            self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._tables[-1]].append(self._row)
            self._row = None
        elif tag == "table":
            self._tables.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def body_rows(self, table_id: str, header: bool = True) -> dict[str, list[str]]:
        """Rows of a table (after its header row, if it has one), keyed by their first cell."""
        return {row[0]: row[1:] for row in self.tables[table_id][1 if header else 0:]}


def _definition_ids(report: dict) -> set[str]:
    ids = {floor["definition"] for floor in report["noise_floors"].values()}
    for entry in report["methods"]:
        ids |= {metric["definition"] for metric in entry["metrics"].values()}
    return ids


def _decode_png(data_uri: str) -> np.ndarray:
    import matplotlib.image

    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    raw = base64.b64decode(data_uri[len(prefix):], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(raw), format="png")


def _is_drawn(image: np.ndarray) -> bool:
    """Not blank: pixels vary and some are far from white."""
    rgb = image[..., :3].astype(float)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    return float(rgb.std()) > 0.0 and float(np.mean(rgb.min(axis=-1) < 0.8)) > 0.005


# --------------------------------------------------------------------------- content


def test_summary_table_has_a_row_per_method_with_oracle_and_floors_beside_each_number(sample):
    page = Page(render_html(sample))
    assert "summary" in page.tables
    header = page.tables["summary"][0]
    for column in ("FA", "RA", "TA", "MIA-Efficacy", "Avg.Gap", "ToW", "F", "Score", "KLoM forget P95",
                   "U-LiRA AUC", "Cost ratio"):
        assert any(cell.startswith(column) for cell in header), column
    rows = page.body_rows("summary")
    assert list(rows) == ["salun", "gradient_ascent"]
    salun = " | ".join(rows["salun"])
    for shown in ("60.1 ± 1.2", "oracle 58.0 ± 1.0", "oracle 74.1 ± 0.9", "oracle 58.4 ± 1.1", "oracle 47.0 ± 2.5",
                  "0.18", "floor 0.21", "N 32 · ceiling 4", "1.4", "floor 1.1", "0.56", "floor 0.51", "32 shadows",
                  "0.08×", "time 0.1×"):
        assert shown in salun, shown
    # Every column names the definition id of its numbers.
    for definition in ("accuracy@forget", "mia_efficacy@svc-confidence", "competition_f@neurips2023",
                       "klom@p95-20bins", "ulira@gaussian", "cost@example-gradients/retrain"):
        assert any(definition in cell for cell in header), definition


def test_failed_method_shows_its_reason_and_the_rest_still_renders(sample):
    page = Page(render_html(sample))
    failed = page.body_rows("summary")["gradient_ascent"]
    assert failed == ["failed: all 32 members diverged (non-finite loss); their last finite parameters were kept"]
    assert "gradient_ascent failed: all 32 members diverged" in page.all_text  # its verdict line
    assert "salun" in page.body_rows("summary")


def test_every_definition_used_is_listed_with_an_explanation(sample):
    page = Page(render_html(sample))
    definitions = page.body_rows("definitions")
    for definition in _definition_ids(sample):
        assert definition in definitions, definition
        assert "No description" not in definitions[definition][0], definition
    # Plots name their definitions too.
    assert "confidence_attack@forget-vs-test-roc" in definitions
    assert "margin@logit-minus-logsumexp-others" in definitions


def test_plots_are_embedded_png_images_with_alt_text(sample):
    page = Page(render_html(sample))
    # One cost chart, then the eps histogram, the ROC and the worst-example margins of the one method that ran.
    assert len(page.images) == 4
    for image in page.images:
        assert image["class"] == "plot"
        assert len(image["alt"]) > 20
        assert _is_drawn(_decode_png(image["src"]))


def test_page_is_self_contained(sample):
    text = render_html(sample)
    page = Page(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for tag, attribute, value in page.references:
        assert value.startswith("data:image/png;base64,") or value.startswith("#"), (tag, attribute, value[:60])
    assert "url(" not in text and "@import" not in text and "http://" not in text and "https://" not in text


def test_quick_resolution_shows_the_low_resolution_banner(sample):
    assert "LOW RESOLUTION" not in render_html(sample)
    sample["resolution"] = "quick"
    page = Page(render_html(sample))
    assert "LOW RESOLUTION" in page.all_text
    assert "verdicts are provisional" in page.all_text


def test_header_names_scenario_date_machine_and_population_sizes(sample):
    page = Page(render_html(sample))
    scenario, run = page.body_rows("scenario-info", header=False), page.body_rows("run-info", header=False)
    assert scenario["Scenario"] == ["mnist1d/random:0.1@seed0/mlp"]
    assert run["Date"] == ["2026-11-21T05:30:00Z"]
    assert "AMD EPYC" in run["Machine"][0]
    assert run["N models per population"] == ["32"] and run["Shadow models (U-LiRA)"] == ["32"]


def test_missing_metrics_plots_and_header_fields_render_as_dashes(sample):
    salun = sample["methods"][0]
    for key in ("F", "competition_score", "KLoM_forget_p95", "ULiRA_auc", "cost_gradient_ratio"):
        del salun["metrics"][key]
    del salun["metrics"]["FA"]["oracle"]
    salun["plots"] = {"eps": [], "mia_roc": {"fpr": [0.0, 1.0]}}
    sample["methods"].append({"method": "bare", "status": "ok"})  # no metrics, plots, cost or error keys
    del sample["noise_floors"], sample["machine"], sample["scenario"]["recipe"]
    page = Page(render_html(sample))
    rows = page.body_rows("summary")
    assert rows["bare"] == ["–"] * 11
    assert rows["salun"][6] == "–" and rows["salun"][0] == "60.1 ± 1.2 oracle –"
    assert page.body_rows("run-info", header=False)["Machine"] == ["–"]
    assert "not judged" in page.all_text
    assert render_html({})  # even an empty report renders


def test_strings_are_escaped(sample):
    sample["methods"][1]["method"] = "<script>alert(1)</script>"
    sample["methods"][1]["error"] = "bad <b>input</b> & more"
    sample["scenario"]["name"] = '"><img src=x onerror=alert(1)>'
    text = render_html(sample)
    page = Page(text)
    assert "script" not in page.tags
    assert not any(value == "x" for _, _, value in page.references)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "failed: bad <b>input</b> & more" in page.body_rows("summary")["<script>alert(1)</script>"][0]


# --------------------------------------------------------------------------- the verdict rule


def _at_retraining(sample: dict) -> dict:
    """A method whose every audited number equals the oracle's value or the noise floor."""
    entry = copy.deepcopy(sample["methods"][0])
    entry["method"] = "perfect"
    metrics = entry["metrics"]
    for key in ("FA", "RA", "TA", "MIA"):
        metrics[key]["value"] = metrics[key]["oracle"]
    for key in ("F", "KLoM_forget_p95", "ULiRA_auc"):
        metrics[key]["value"] = metrics[key]["noise_floor"]
    return entry


def test_verdict_close_to_retraining_only_when_every_audit_is_within_tolerance(sample):
    perfect = _at_retraining(sample)
    assert report_html.verdict(perfect, sample) == ("good", "close to retraining on all audits")

    leaky = copy.deepcopy(perfect)
    leaky["metrics"]["F"]["value"] = 0.05
    cls, text = report_html.verdict(leaky, sample)
    assert cls == "bad" and text == "distinguishable from retraining: F 0.05 vs floor 0.21"

    slightly = copy.deepcopy(perfect)
    slightly["metrics"]["KLoM_forget_p95"]["value"] = 1.1 * 1.4  # 140% of the floor: outside 125%, inside 150%
    assert report_html.verdict(slightly, sample)[0] == "warn"

    partial = copy.deepcopy(perfect)
    del partial["metrics"]["ULiRA_auc"]
    assert report_html.verdict(partial, sample) == (
        "good", "close to retraining on every audit run (not judged: U-LiRA AUC)")


def test_non_finite_metric_is_shown_and_never_judged_close(sample):
    perfect = _at_retraining(sample)
    perfect["metrics"]["TA"]["value"] = math.nan
    sample["methods"] = [perfect]
    page = Page(render_html(sample))
    assert page.body_rows("summary")["perfect"][2].startswith("NaN")
    assert "perfect distinguishable from retraining: TA NaN" in page.all_text


def test_render_rejects_something_that_is_not_a_report():
    with pytest.raises(ExpungeError, match="report dict"):
        render_html([1, 2, 3])
    with pytest.raises(ExpungeError, match="methods"):
        render_html({"methods": "salun"})


# --------------------------------------------------------------------------- writing


def test_write_report_writes_json_and_html_and_nothing_else(sample, tmp_path):
    json_path, html_path = write_report(sample, tmp_path / "out")
    assert (json_path, html_path) == (tmp_path / "out" / "report.json", tmp_path / "out" / "report.html")
    assert json.loads(json_path.read_text()) == sample
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(os.listdir(tmp_path / "out")) == ["report.html", "report.json"]
    assert os.stat(html_path).st_mode & 0o044 == 0o044  # readable by the reviewer, not only the owner


def test_a_failing_render_leaves_the_existing_report_untouched(sample, tmp_path, monkeypatch):
    write_report(sample, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("report.json", "report.html")}

    def broken(figure):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(report_html, "_png_data_uri", broken)
    changed = copy.deepcopy(sample)
    changed["scenario"]["name"] = "a newer audit"
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_report(changed, tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(tmp_path)) == ["report.html", "report.json"]


def test_a_failing_write_leaves_no_temporary_file(sample, tmp_path, monkeypatch):
    (tmp_path / "report.html").write_text("GOOD")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_report(sample, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "GOOD"


# --------------------------------------------------------------------------- in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
# Appended to a copy of the page only: the report itself carries no script.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.querySelectorAll("img.plot")];
  document.body.dataset.imagesDecoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.summaryRows = document.querySelectorAll("table#summary tbody tr").length;
});
</script>
</body>"""


def _chromium(page: Path, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments, page.as_uri()],
                          capture_output=True, text=True, timeout=60)


def _console_messages(stderr: str) -> list[str]:
    """Lines where the page wrote to the console or threw (chromium's own dbus/GPU noise is not one)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)")
def test_report_opens_in_headless_chromium(sample, tmp_path):
    _, html_path = write_report(sample, tmp_path / "report")

    # The console check can fail: a page that throws is caught.
    throws = tmp_path / "throws.html"
    throws.write_text("<!DOCTYPE html><html><body><script>throw new Error('probe-boom')</script></body></html>")
    caught = _console_messages(_chromium(throws, tmp_path / "p0", "--dump-dom").stderr)
    assert any("probe-boom" in line for line in caught)

    probe = tmp_path / "report" / "probe.html"
    probe.write_text(html_path.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    run = _chromium(probe, tmp_path / "p1", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console_messages(run.stderr) == []
    dom = run.stdout
    assert re.search(r'<table id="summary"', dom)
    assert f'data-summary-rows="{len(sample["methods"])}"' in dom
    images = len(re.findall(r'<img class="plot"', dom))
    assert images == 4
    assert f'data-images-decoded="{images}"' in dom  # every plot decoded to a real picture

    screenshot = tmp_path / "page.png"
    run = _chromium(html_path, tmp_path / "p2", f"--screenshot={screenshot}", "--window-size=1400,2000")
    assert run.returncode == 0 and screenshot.exists(), run.stderr[-2000:]
    assert _console_messages(run.stderr) == []
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (2000, 1400)
    assert _is_drawn(pixels)
