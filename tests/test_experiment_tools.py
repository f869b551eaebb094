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
