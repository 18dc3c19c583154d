"""`fhectl bench --quick` (the CI smoke run) writes a complete report; `bench compare` reads two."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from fhectl.bench.compare import compare_reports
from fhectl.bench.report import SCHEMA_VERSION, load_report
from fhectl.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = runner.invoke(app, ["bench", "--quick", "--batch-sizes", "2", "--device", "cpu", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["report_dir"]


def test_quick_report_is_complete(quick_report):
    from pathlib import Path

    d = Path(quick_report)
    assert {"report.json", "report.md", "ops_vs_openfhe.png", "layers_latency.png", "block_stages.png"} <= {
        p.name for p in d.iterdir()}
    rep = load_report(d)
    assert rep["schema_version"] == SCHEMA_VERSION
    env = rep["environment"]
    assert env["packages"]["numba"] and env["git"]["commit"] and env["cpu_count"]
    impls = {(r["suite"], r["impl"]) for r in rep["results"]}
    assert {("ops", "fhectl"), ("ops", "openfhe"), ("layers", "fhectl"), ("block", "fhectl")} <= impls
    for r in rep["results"]:
        t = r["timing"]
        assert t["min_s"] <= t["median_s"] <= t["max_s"] and t["repeats"] >= 1
        if r["name"] not in ("encode", "ntt_per_limb") and r["suite"] == "ops":
            assert r["precision_bits"] is not None and float(r["precision_bits"]) > 15, r
    block = [r for r in rep["results"] if r["suite"] == "block"][0]
    assert block["tokens_per_s"] > 0 and block["counters"]["rotations"] > 0 and block["stages"]
    md = (d / "report.md").read_text()
    assert "fhectl / OpenFHE" in md and rep["profile"]["params_id"] in md
    assert rep["memory"]["peak_rss_bytes"] > 0


def test_compare_same_report_finds_no_regression(quick_report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(quick_report, copy)
    res = runner.invoke(app, ["bench", "compare", quick_report, str(copy), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows and all(r["verdict"] == "same" and r["ratio"] == 1.0 for r in rows)


def test_compare_flags_changes_beyond_the_noise(quick_report):
    old = load_report(quick_report)
    for r in old["results"]:
        r["timing"]["iqr_s"] = 0.02 * r["timing"]["median_s"]  # 2 % spread in both runs
    slower = json.loads(json.dumps(old))
    for r in slower["results"]:
        r["timing"]["median_s"] *= 1.5
    assert all(r["verdict"] == "regression" for r in compare_reports(old, slower))
    within = json.loads(json.dumps(old))
    for r in within["results"]:
        r["timing"]["median_s"] *= 1.03  # under the 5 % floor
    assert all(r["verdict"] == "same" for r in compare_reports(old, within))


def test_bench_bad_input(tmp_path):
    res = runner.invoke(app, ["bench", "--batch-sizes", "1,x", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--batch-sizes" in res.output
    res = runner.invoke(app, ["bench", "--suite", "nope", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown suite" in res.output
    res = runner.invoke(app, ["bench", "compare", str(tmp_path), str(tmp_path)])
    assert res.exit_code == 2 and "cannot read benchmark report" in res.output
