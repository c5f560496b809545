"""docs/benchmarks.md is rendered from result files only: the rows, where they ran, and the fp32-vs-bf16 table."""
from __future__ import annotations

import json

from benchmarks.report import EQUIVALENCE, write_report


def test_report_renders_results_and_the_equivalence_table_from_files(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "dtype-cpu.json").write_text(json.dumps({
        "benchmark": "dtype", "device_kind": "cpu", "device": "Some CPU", "cpu": "Some CPU", "model": "m",
        "headline": {"lora: ours bf16 vs fp32 tokens/s": "1.97×"}, "goals": {}, "time": "t", "threads": 2}))
    out = write_report(results, tmp_path / "benchmarks.md")
    page = out.read_text()
    assert "| dtype | full | m | lora: ours bf16 vs fp32 tokens/s | 1.97× |  |" in page
    assert "quickstart's conclusions" not in page  # no equivalence record: no section
    (results / EQUIVALENCE).write_text(json.dumps({
        "roots": {"float32": ["a"], "bfloat16": ["b"]}, "cpu": "Some CPU", "time": "now", "git_hash": "0123456789ab",
        "markdown": "| model | metric |\n|---|---|", "summary": "bf16 is equivalent on 12 of 12 cells."}))
    page = write_report(results, tmp_path / "benchmarks.md").read_text()
    section = page[page.index("quickstart's conclusions"):page.index("## CPU: Some CPU")]
    assert "| model | metric |" in section and "12 of 12 cells" in section and "0123456789" in section
    assert "`a` (float32), `b` (bfloat16)" in section


def test_two_results_of_one_benchmark_on_cpus_of_one_name_are_told_apart_by_file(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name, value in (("dtype-cpu.json", "1.97×"), ("dtype-cpu-zen5.json", "2.5×")):
        (results / name).write_text(json.dumps({
            "benchmark": "dtype", "device_kind": "cpu", "device": "AMD EPYC", "cpu": "AMD EPYC", "model": "m",
            "headline": {"lora: ours bf16 vs fp32 tokens/s": value}, "goals": {}, "time": "t", "threads": 2}))
    page = write_report(results, tmp_path / "benchmarks.md").read_text()
    assert "| dtype | full (`dtype-cpu.json`) | m | lora: ours bf16 vs fp32 tokens/s | 1.97× |  |" in page
    assert "| dtype | full (`dtype-cpu-zen5.json`) | m | lora: ours bf16 vs fp32 tokens/s | 2.5× |  |" in page
    (results / "dtype-cpu-zen5.json").unlink()
    assert "| dtype | full | m |" in write_report(results, tmp_path / "benchmarks.md").read_text()  # one: as before
