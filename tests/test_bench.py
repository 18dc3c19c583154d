"""`fhectl bench --quick` (the CI smoke run) writes a complete report; `bench compare` reads two."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fhectl.bench.compare import compare_reports, is_regression
from fhectl.bench.report import SCHEMA_VERSION, busy_machine, load_report
from fhectl.cli.main import app
from fhectl.errors import InputError

runner = CliRunner()
COMMITTED_OPS = Path(__file__).resolve().parents[1] / "bench_results" / "2026-11-23_dc5f85e5_cpu_gpt2-n16-128"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = runner.invoke(app, ["bench", "--quick", "--suite", "ops,layers,block", "--batch-sizes", "2", "--repeat", "3",
                              "--device", "cpu", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert "estimated cost: about" in res.stderr  # said before the run starts
    return json.loads(res.stdout)["report_dir"]


def test_quick_report_is_complete(quick_report):
    d = Path(quick_report)
    assert {"report.json", "report.md", "ops_vs_openfhe.png", "layers_throughput.png", "block_stages.png"} <= {
        p.name for p in d.iterdir()}
    rep = load_report(d)
    assert rep["schema_version"] == SCHEMA_VERSION
    env = rep["environment"]
    assert env["packages"]["numba"] and env["git"]["commit"] and env["cpu_count"]
    impls = {(r["suite"], r["impl"]) for r in rep["results"]}
    assert {("ops", "fhectl"), ("ops", "openfhe"), ("layers", "fhectl"), ("block", "fhectl")} <= impls
    for r in rep["results"]:
        t = r["timing"]
        assert t["min_s"] <= t["median_s"] <= t["max_s"] and t["repeats"] == 3
        assert t["min_s"] <= t["mean_s"] <= t["max_s"] and t["stdev_s"] >= 0 and len(t["samples_s"]) == 3
        if r["name"] not in ("encode", "ntt_per_limb") and r["suite"] == "ops":
            assert r["precision_bits"] is not None and float(r["precision_bits"]) > 15, r
    assert rep["config"]["interleaved"] and "estimated cost" in rep["config"]["estimate"]
    assert len(rep["config"]["load_before"]) == 3 and len(rep["config"]["load_after"]) == 3
    for r in rep["results"]:
        if r["suite"] == "ops" and r["impl"] == "fhectl":
            ratio = r["ratio_to_baseline"]
            assert ratio["pairs"] == 3 and ratio["ci_low"] <= ratio["median"] <= ratio["ci_high"]
            assert any("only 3 pairs" in w for w in ratio["warnings"])  # few repeats are said, not hidden
    block = [r for r in rep["results"] if r["suite"] == "block"][0]
    assert block["tokens_per_s"] > 0 and block["counters"]["rotations"] > 0 and block["stages"]
    md = (d / "report.md").read_text()
    assert "fhectl / OpenFHE [interval]" in md and "mean ± sd" in md and rep["profile"]["params_id"] in md
    assert "Warnings" in md and "interleaved" in md
    assert rep["memory"]["peak_rss_bytes"] > 0


def test_compare_same_report_finds_no_regression(quick_report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(quick_report, copy)
    res = runner.invoke(app, ["bench", "compare", quick_report, str(copy), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows and all(r["verdict"] in ("same", "baseline") and r["ratio"] == 1.0 for r in rows)
    assert any(r["new_vs_baseline"] is not None for r in rows)  # ops judged by the fhectl / OpenFHE ratio


def test_render_rewrites_plots_and_markdown_from_the_json(quick_report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(quick_report, copy)
    for f in ("report.md", "ops_vs_openfhe.png"):
        (copy / f).unlink()
    res = runner.invoke(app, ["bench", "render", str(copy)])
    assert res.exit_code == 0, res.output
    assert (copy / "ops_vs_openfhe.png").exists()
    rendered, original = (copy / "report.md").read_text(), (Path(quick_report) / "report.md").read_text()
    assert rendered.startswith(original) and "re-rendered" in rendered[len(original):]  # and says so


def test_a_busy_machine_is_said():
    def report(before, after):
        return {"environment": {"cpu_count": 2}, "config": {"load_before": [before, 0, 0], "load_after": [after, 0, 0]}}

    assert busy_machine(report(0.4, 1.4)) is None  # after a quiet run the load is its own threads
    assert "before the run" in busy_machine(report(1.5, 1.4))
    assert "after the run" in busy_machine(report(0.4, 4.6))


def test_compare_warns_about_a_busy_run(tmp_path):
    quiet = _synthetic({"a": [1.0] * 5})
    busy = _synthetic({"a": [1.0] * 5})
    quiet["environment"]["cpu_count"] = busy["environment"]["cpu_count"] = 2
    quiet["config"]["load_before"], busy["config"]["load_before"] = [0.2, 0, 0], [4.5, 0, 0]
    (tmp_path / "quiet.json").write_text(json.dumps(quiet))
    (tmp_path / "busy.json").write_text(json.dumps(busy))
    res = runner.invoke(app, ["bench", "compare", str(tmp_path / "quiet.json"), str(tmp_path / "busy.json")])
    assert res.exit_code == 0, res.output
    assert "busy.json was measured on a busy machine" in res.stderr and "quiet.json was" not in res.stderr


def _synthetic(samples_by_name: dict, profile_id="p1", device="cpu", precision=30.0) -> dict:
    results = []
    for name, samples in samples_by_name.items():
        results.append({"suite": "layers", "name": name, "impl": "fhectl", "batch_size": 1, "device": device,
                        "timing": {"median_s": sorted(samples)[len(samples) // 2], "samples_s": samples},
                        "precision_bits": precision})
    return {"schema_version": SCHEMA_VERSION, "profile": {"name": "p", "params_id": profile_id},
            "config": {"device": device}, "environment": {"cpu": "x"}, "results": results}


def test_compare_flags_only_changes_beyond_the_noise():
    base = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01]
    old = _synthetic({"steady": base, "noisy": [1.0, 0.6, 1.5, 0.8, 1.3, 0.9, 1.2]})
    slower = _synthetic({"steady": [v * 1.5 for v in base], "noisy": [1.2, 0.7, 1.8, 1.0, 1.5, 1.1, 1.4]})
    verdicts = {r["name"]: r["verdict"] for r in compare_reports(old, slower)}
    assert verdicts == {"steady": "regression", "noisy": "same"}  # the noisy row's intervals overlap
    within = _synthetic({"steady": [v * 1.03 for v in base], "noisy": [1.0] * 7})
    assert all(r["verdict"] == "same" for r in compare_reports(old, within))  # under the 5 % floor
    faster = _synthetic({"steady": [v * 0.5 for v in base], "noisy": [1.0] * 7})
    assert {r["name"]: r["verdict"] for r in compare_reports(old, faster)}["steady"] == "improvement"


def test_compare_judges_ops_by_the_interleaved_ratio():
    """Load that slows both fhectl and OpenFHE is no regression; a worse ratio is."""
    def ops_report(scale, ratio):
        ours = [scale * v for v in (1.0, 1.02, 0.98, 1.01, 0.99, 1.0)]
        theirs = [v / ratio for v in ours]
        ratios = [a / b for a, b in zip(ours, theirs)]
        rs = {"median": ratio, "ci_low": min(ratios), "ci_high": max(ratios), "ratios": ratios}
        rep = _synthetic({})
        rep["results"] = [
            {"suite": "ops", "name": "rotate", "impl": "fhectl", "batch_size": None,
             "timing": {"median_s": ours[0], "samples_s": ours}, "ratio_to_baseline": rs, "precision_bits": 29.0},
            {"suite": "ops", "name": "rotate", "impl": "openfhe", "batch_size": None,
             "timing": {"median_s": theirs[0], "samples_s": theirs}, "precision_bits": 26.0}]
        return rep

    loaded = compare_reports(ops_report(1.0, 0.5), ops_report(3.0, 0.5))
    assert [r["verdict"] for r in loaded] == ["same", "baseline"]
    assert loaded[0]["time_verdict"] == "regression"  # the absolute time did change: shown, not flagged
    worse = compare_reports(ops_report(1.0, 0.5), ops_report(1.0, 0.8))
    assert worse[0]["verdict"] == "regression" and is_regression(worse[0])


def test_compare_flags_precision_loss():
    old = _synthetic({"a": [1.0] * 5}, precision=30.0)
    assert compare_reports(old, _synthetic({"a": [1.0] * 5}, precision=29.5))[0]["verdict"] == "same"
    lost = compare_reports(old, _synthetic({"a": [1.0] * 5}, precision=27.0))[0]
    assert lost["verdict"] == "precision loss" and is_regression(lost)


def test_compare_refuses_different_profiles_or_devices_without_a_flag():
    old = _synthetic({"a": [1.0] * 5})
    with pytest.raises(InputError, match="profiles differ"):
        compare_reports(old, _synthetic({"a": [1.0] * 5}, profile_id="p2"))
    with pytest.raises(InputError, match="devices differ"):
        compare_reports(old, _synthetic({"a": [1.0] * 5}, device="cuda"))
    assert compare_reports(old, _synthetic({"a": [1.0] * 5}, profile_id="p2"), allow_mismatch=True)


def test_compare_cli_refuses_mismatch_and_reads_schema_1(quick_report):
    res = runner.invoke(app, ["bench", "compare", str(COMMITTED_OPS), quick_report])
    assert res.exit_code == 2 and "profiles differ" in res.stderr and "--allow-mismatch" in res.stderr
    res = runner.invoke(app, ["bench", "compare", str(COMMITTED_OPS), str(COMMITTED_OPS), "--json"])
    assert res.exit_code == 0, res.output  # a committed schema-1 report still compares (with itself)


def test_estimate_is_printed_and_the_bare_run_is_minutes():
    res = runner.invoke(app, ["bench", "--estimate", "--json"])
    assert res.exit_code == 0, res.output
    bare = json.loads(res.stdout)
    assert list(bare["parts_s"]) == ["ops"] and 30 < bare["seconds"] < 600 and bare["peak_bytes"] < 4 * 2**30
    res = runner.invoke(app, ["bench", "--estimate", "--json", "--suite", "ops,layers,block"])
    heavy = json.loads(res.stdout)
    assert heavy["seconds"] > 3600 and heavy["peak_bytes"] > 10 * 2**30  # opt-in, and said so
    res = runner.invoke(app, ["bench", "--estimate", "--json", "--quick"])
    assert json.loads(res.stdout)["seconds"] < 60
    res = runner.invoke(app, ["bench", "--estimate"])
    assert res.exit_code == 0 and "estimated cost: about" in res.stdout and "GiB" in res.stdout


def test_bench_bad_input(tmp_path):
    res = runner.invoke(app, ["bench", "--batch-sizes", "1,x", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--batch-sizes" in res.output
    res = runner.invoke(app, ["bench", "--suite", "nope", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown suite" in res.output
    res = runner.invoke(app, ["bench", "--suite", "block", "--batch-sizes", "4096", "--estimate"])
    assert res.exit_code == 2 and "exceed" in res.output  # refused before any work, not after minutes
    res = runner.invoke(app, ["bench", "compare", str(tmp_path), str(tmp_path)])
    assert res.exit_code == 2 and "cannot read benchmark report" in res.output
