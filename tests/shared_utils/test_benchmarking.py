"""shared_utils.benchmarking: training curves against time, and time to reach a metric."""

from __future__ import annotations

import json

import pytest
import torch

from shared_utils.benchmarking import (
    bench_parser,
    eval_curve,
    parse_bench_args,
    reached_text,
    sidecar_curve,
    time_to_reach,
)
from shared_utils.training import CSVLogger


def test_time_to_reach_takes_the_first_point_past_each_threshold():
    points = [
        {"fid": 80.0, "cpu": 1.0},
        {"fid": 35.0, "cpu": 2.0},
        {"fid": 41.0, "cpu": 3.0},  # a bump back up does not undo the first crossing
        {"fid": 29.0, "cpu": 4.0},
    ]
    reached = time_to_reach(points, "fid", (60, 40, 30, 10), time_key="cpu")
    assert reached == {"fid<=60": 2.0, "fid<=40": 2.0, "fid<=30": 4.0, "fid<=10": None}
    assert reached_text(reached) == (
        "fid<=60 after 2.0 CPU-min, fid<=40 after 2.0 CPU-min, fid<=30 after 4.0 CPU-min, "
        "fid<=10 never"
    )
    accuracy = [{"acc": 0.5, "cpu": 1.0}, {"acc": 0.95, "cpu": 2.0}]
    assert time_to_reach(accuracy, "acc", (0.9,), "cpu", lower_is_better=False) == {"acc>=0.9": 2.0}


def test_eval_curve_interpolates_the_run_time_at_each_evaluation(tmp_path):
    times, evals = CSVLogger(tmp_path / "time.csv"), CSVLogger(tmp_path / "eval.csv")
    for step, cpu, wall in ((100, 60.0, 30.0), (200, 180.0, 90.0)):
        times.log(step=step, wall_s=wall, cpu_s=cpu, steps_per_s=1.0)
    for step, bpd in ((50, 3.0), (150, 2.0), (250, 1.5)):
        evals.log(step=step, epoch=step / 100, test_bpd=bpd)
    curve = eval_curve(tmp_path, "test_bpd")
    assert [p["step"] for p in curve] == [50, 150, 250]
    # from (0, 0) to the first row, between rows, and extrapolated past the last one
    assert [p["cpu_minutes"] for p in curve] == pytest.approx([0.5, 2.0, 4.0])
    assert [p["wall_minutes"] for p in curve] == pytest.approx([0.25, 1.0, 2.0])
    assert eval_curve(tmp_path / "empty", "test_bpd") == []


def test_bench_parser_shares_threads_and_results(tmp_path):
    doc = "Benchmark of a project.\n\nMore text."
    parser = bench_parser("python -m p.bench", doc, tmp_path / "r.json", smoke=False)
    parser.add_argument("--steps", type=int, default=3)
    before = torch.get_num_threads()
    try:
        args, argv = parse_bench_args(parser, ["--threads", "1", "--steps", "5"])
        assert (args.threads, args.steps, args.results) == (1, 5, tmp_path / "r.json")
        assert argv == ["--threads", "1", "--steps", "5"] and torch.get_num_threads() == 1
        assert parser.description == "Benchmark of a project."
        smoke = bench_parser("python -m p.bench", doc, tmp_path / "r.json", smoke=True)
        assert parse_bench_args(smoke, [])[0].results is None  # smoke runs write nothing
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)


def test_sidecar_curve_orders_checkpoints_by_cpu_minutes_and_skips_unevaluated(tmp_path):
    def sidecar(name, cpu_s, steps, fid=None):
        metrics = {"train_cpu_s": cpu_s, "steps": steps}
        if fid is not None:
            metrics["sq_n500"] = {"fid": fid, "floor": {"fid": 1.5}}
        (tmp_path / name).write_text(json.dumps({"metrics": metrics}))
        return tmp_path / name

    late = sidecar("late.json", 1800.0, 2000, fid=50.0)
    early = sidecar("early.json", 480.0, 574, fid=65.0)
    unscored = sidecar("unscored.json", 900.0, 1000)
    points = sidecar_curve([late, unscored, early], "sq_n500/fid", {"floor": "sq_n500/floor/fid"})
    assert points == [
        {"sidecar": "early.json", "steps": 574, "cpu_minutes": 8.0, "fid": 65.0, "floor": 1.5},
        {"sidecar": "late.json", "steps": 2000, "cpu_minutes": 30.0, "fid": 50.0, "floor": 1.5},
    ]
    assert time_to_reach(points, "fid", (60,)) == {"fid<=60": 30.0}
    with pytest.raises(FileNotFoundError, match="no such sidecar"):
        sidecar_curve([tmp_path / "missing.json"], "sq_n500/fid")
