"""
The one-command experiment tools run train_net.py in subprocesses, which in-process tests of
the stages cannot stand in for (a registration or import that only the subprocess lacks).
"""
import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO, load_script

pytestmark = pytest.mark.slow

TINY = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0"]


def _fake_finished_run(output, miou, times):
    """What tools/pipeline_runs.train reads back from a finished run."""
    os.makedirs(output)
    open(os.path.join(output, "model_final.pth"), "wb").close()
    with open(os.path.join(output, "results.json"), "w") as f:
        json.dump({"sem_seg": {"mIoU": miou}}, f)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        f.writelines(json.dumps({"iteration": i, "time": t}) + "\n" for i, t in enumerate(times))


def test_agmm_comparison_trains_every_config_and_aggregates_seeds(synthetic_dir, tmp_path):
    tool = load_script("tools/run_agmm_comparison.py")
    out = tmp_path / "comparison"
    names = [name for name, *_ in tool.CONFIGS]
    # seed 1 is "finished" with known figures, so it must be reused, not retrained
    fake = {name: 10.0 * (i + 1) for i, name in enumerate(names)}
    for name, miou in fake.items():
        _fake_finished_run(str(out / name / "seed1"), miou, [0.5, 0.1, 0.3])

    rows = tool.main(["--output", str(out), "--seeds", "0", "1", "--opts", *TINY])

    assert [r["config"] for r in rows] == [c for *_, c, _ in tool.CONFIGS]
    for name, row in zip(names, rows):
        real = json.load(open(out / name / "seed0" / "results.json"))["sem_seg"]["mIoU"]
        assert 0 <= real <= 100
        assert [r["seed"] for r in row["runs"]] == [0, 1]
        assert row["runs"][1]["mIoU"] == fake[name] and row["runs"][1]["s_per_iter"] == 0.3
        assert row["mIoU_mean"] == pytest.approx((real + fake[name]) / 2)
        assert (row["mIoU_min"], row["mIoU_max"]) == (min(real, fake[name]), max(real, fake[name]))
        assert row["fraction_of_supervised"] == pytest.approx(row["mIoU_mean"] / rows[0]["mIoU_mean"])
        # the overrides reached the subprocess
        config = open(out / name / "seed0" / "config.yaml").read()
        assert "MAX_ITER: 2\n" in config and "SEED: 0\n" in config
        assert ("wss_synthetic_train_scribbles\n" in config) == ("whole" in name)
    table = (out / "results.md").read_text()
    assert table.count("\n") == 2 + len(rows)
    assert f"{fake[names[2]]:.2f}" in table
    assert json.load(open(out / "results.json"))[2]["loss"] == "AGMM"


def test_sipe_pipeline_tool_starts():
    # its stages run in tests/test_sipe_pipeline.py; this checks the script's own imports
    result = subprocess.run([sys.executable, "tools/run_sipe_pipeline.py", "--help"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--baseline-results" in result.stdout


def test_spml_comparison_runs_every_stage_and_aggregates_seeds(synthetic_dir, tmp_path):
    tool = load_script("tools/run_spml_comparison.py")
    out = tmp_path / "spml"
    # seed 1 "finished" with known figures: reused, not retrained
    fake = {"supervised": 50.0, "spml_points": 30.0, "pce_points": 20.0}
    _fake_finished_run(str(out / "supervised" / "seed1"), fake["supervised"], [0.4])
    _fake_finished_run(str(out / "pce_points" / "seed1"), fake["pce_points"], [0.4])
    spml = out / "spml_points" / "seed1"
    _fake_finished_run(str(spml / "stage_a"), 1.0, [0.9, 0.7, 0.8])
    _fake_finished_run(str(spml / "stage_c"), fake["spml_points"], [0.2])
    os.makedirs(spml / "pseudo")
    (spml / "pseudo" / "second_stage.yaml").write_text("")
    (spml / "pseudo" / "pseudo_label_quality.json").write_text(json.dumps({"mIoU": 40.0}))

    rows = tool.main(["--output", str(out), "--seeds", "0", "1", "--kinds", "points", "--no-deeplab",
                      "--opts", *TINY])

    assert [r["key"] for r in rows] == ["supervised", "spml_points", "pce_points"]
    by_key = {r["key"]: r for r in rows}
    for key, row in by_key.items():
        assert [r["seed"] for r in row["runs"]] == [0, 1] and row["runs"][1]["mIoU"] == fake[key]
        assert row["fraction_of_supervised"] == pytest.approx(row["mIoU_mean"] / by_key["supervised"]["mIoU_mean"])
    # SPML's row: stage C's val mIoU, stage A's s/iter, stage B's label quality
    assert by_key["spml_points"]["runs"][1]["s_per_iter"] == 0.8
    assert by_key["spml_points"]["runs"][1]["pseudo_label_mIoU"] == 40.0
    real = out / "spml_points" / "seed0"
    assert json.load(open(real / "pseudo" / "pseudo_label_quality.json"))["images"] > 0
    stage_c = open(real / "stage_c" / "config.yaml").read()
    assert "SPMLClassifier" in stage_c and "seed0_pseudo" in stage_c and "stage_a/model_final.pth" in stage_c
    assert "TRAIN_EMBEDDING: true" in open(out / "pce_points" / "seed0" / "config.yaml").read()
    assert "wss_synthetic_train\n" in open(out / "supervised" / "seed0" / "config.yaml").read()
    assert (out / "results.md").read_text().count("\n") == 2 + len(rows)
    # the seeds' record: both seeds, the figures read back above
    record = json.load(open(out / "seed_record.json"))
    assert sorted(record["seeds"]) == ["0", "1"]
    assert record["seeds"]["1"]["spml_points"]["mIoU"] == fake["spml_points"]


def test_spml_comparison_reports_recorded_seeds_without_running_and_refuses_other_protocols(tmp_path):
    tool = load_script("tools/run_spml_comparison.py")
    record = tmp_path / "record.json"
    protocol = {"kinds": ["tags"], "deeplab": True, "cams": False, "opts": []}
    keys = ["supervised", "supervised_deeplab", "spml_tags", "pce_tags", "deeplab_tags"]
    seeds = {str(seed): {key: {"seed": seed, "mIoU": 10.0 * (i + 1) + seed, "s_per_iter": 0.5} for i, key in
                         enumerate(keys)} for seed in (3, 4)}
    seeds["3"]["spml_tags"]["pseudo_label_mIoU"] = 33.0
    record.write_text(json.dumps({"protocol": protocol, "seeds": seeds}))
    out = tmp_path / "out"

    rows = tool.main(["--output", str(out), "--seeds", "3", "4", "--kinds", "tags", "--record", str(record)])

    # nothing ran: no CAM stage, no training folder; only the report
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]
    by_key = {r["key"]: r for r in rows}
    assert [r["key"] for r in rows] == keys
    # seeds 3 and 4: row i holds 10 (i + 1) + seed
    assert by_key["spml_tags"]["mIoU_mean"] == pytest.approx(33.5)
    assert by_key["spml_tags"]["fraction_of_supervised"] == pytest.approx(33.5 / 13.5)
    assert by_key["pce_tags"]["fraction_of_supervised"] == pytest.approx(43.5 / 13.5)
    assert by_key["deeplab_tags"]["fraction_of_supervised"] == pytest.approx(53.5 / 23.5)
    assert by_key["spml_tags"]["pseudo_label_mIoU_mean"] == 33.0

    with pytest.raises(SystemExit, match="opts: \\[\\] there, \\['SEED', '1'\\] here"):
        tool.main(["--output", str(out), "--seeds", "3", "--kinds", "tags", "--record", str(record),
                   "--opts", "SEED", "1"])
    with pytest.raises(SystemExit, match="deeplab: True there, False here"):
        tool.main(["--output", str(out), "--seeds", "3", "--kinds", "tags", "--no-deeplab", "--record", str(record)])


def test_run_once_skips_finished_stages_and_names_a_missing_output(tmp_path):
    from wss_d2.utils.pipeline_runs import run_once

    done, log = tmp_path / "stage" / "done.json", tmp_path / "logs" / "stage.log"
    write = [sys.executable, "-c", f"open({str(done)!r}, 'w').write('{{}}')"]
    os.makedirs(done.parent)
    run_once(write, str(done), str(log))
    assert done.exists() and log.exists()
    log.unlink()
    run_once(write, str(done), str(log))  # finished: not run again
    assert not log.exists()
    with pytest.raises(SystemExit, match="finished without writing .*missing.json: see .*stage.log"):
        run_once([sys.executable, "-c", "pass"], str(tmp_path / "missing.json"), str(log))


def test_mcc_comparison_reports_recorded_seeds_and_the_seed_spread(tmp_path):
    tool = load_script("tools/run_mcc_comparison.py")
    record = tmp_path / "record.json"
    protocol = {"rows": ["supervised", "mcc", "toco", "cam"], "opts": []}
    base = {"supervised": 60.0, "mcc": 40.0, "toco": 36.0, "cam": 39.0}
    jitter = {"0": -1.0, "1": 1.0}  # seed spread 2.0 for every row
    seeds = {seed: {key: {"seed": int(seed), "mIoU": value + jitter[seed], "s_per_iter": 1.0} for key, value in
                    base.items()} for seed in ("0", "1")}
    record.write_text(json.dumps({"protocol": protocol, "seeds": seeds}))
    out = tmp_path / "out"

    figures = tool.main(["--output", str(out), "--seeds", "0", "1", "--record", str(record)])

    assert sorted(os.listdir(out)) == ["results.json", "results.md"]  # no pretraining, no training
    rows = figures["rows"]
    assert rows["mcc"]["mIoU_mean"] == pytest.approx(40.0)
    assert rows["mcc"]["fraction_of_supervised"] == pytest.approx(40.0 / 60.0)
    verdicts = {tuple(c["rows"]): (round(c["difference"], 6), c["exceeds_spread"]) for c in figures["comparisons"]}
    assert verdicts == {("mcc", "toco"): (4.0, True), ("mcc", "cam"): (1.0, False), ("toco", "cam"): (-3.0, True)}
    table = (out / "results.md").read_text()
    assert "| MCC | 40.00 | 39.00 / 41.00 | 67 % |" in table and "not larger than the seed spread (2.00)" in table
    with pytest.raises(SystemExit, match="opts: \\[\\] there"):
        tool.main(["--output", str(out), "--seeds", "0", "--record", str(record), "--opts", "SEED", "1"])


def test_simformer_comparison_reports_recorded_seeds_per_metric(tmp_path):
    tool = load_script("tools/run_simformer_comparison.py")
    record = tmp_path / "record.json"
    protocol = {"rows": ["supervised", "base_only", "official", "strict"], "opts": []}
    novel = {"supervised": 50.0, "base_only": 10.0, "official": 20.0, "strict": 11.0}
    jitter = {"0": -1.0, "1": 1.0}  # seed spread 2.0 for every row and metric
    seeds = {seed: {key: {"seed": int(seed), "mIoU": 40.0 + jitter[seed], "mIoU-base": 60.0 + jitter[seed],
                          "mIoU-novel": value + jitter[seed], "hIoU": value / 2 + jitter[seed], "s_per_iter": 1.0}
                    for key, value in novel.items()} for seed in ("0", "1")}
    record.write_text(json.dumps({"protocol": protocol, "seeds": seeds}))
    out = tmp_path / "out"

    figures = tool.main(["--output", str(out), "--seeds", "0", "1", "--record", str(record)])

    assert sorted(os.listdir(out)) == ["results.json", "results.md"]  # nothing trained
    assert figures["rows"]["official"]["mIoU-novel_mean"] == pytest.approx(20.0)
    verdicts = {(*c["rows"], c["metric"]): (round(c["difference"], 6), c["exceeds_spread"]) for c in figures["comparisons"]}
    assert verdicts[("official", "base_only", "mIoU-novel")] == (10.0, True)
    assert verdicts[("strict", "base_only", "mIoU-novel")] == (1.0, False)
    assert verdicts[("official", "base_only", "hIoU")] == (5.0, True)
    table = (out / "results.md").read_text()
    assert "| SimFormer, strict (no novel pixel label) | 40.00 | 60.00 | 11.00 | 5.50 | 10.00 / 12.00 |" in table
    with pytest.raises(SystemExit, match="opts: \\[\\] there"):
        tool.main(["--output", str(out), "--seeds", "0", "--record", str(record), "--opts", "SEED", "1"])
