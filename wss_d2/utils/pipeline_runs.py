"""
Helpers of the one-command experiment tools (tools/run_sipe_pipeline.py,
tools/run_agmm_comparison.py): each stage is a subprocess whose finished output is reused.
"""
import json
import os
import statistics
import subprocess
import sys

from .json_io import write_json

# the checkout holding train_net.py and configs/ (wss_d2 is installed from it with `pip install -e .`)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(command, log):
    print("+", " ".join(command), flush=True)
    with open(log, "w") as f:
        subprocess.run(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, check=True)


def run_once(command, done, log):
    """Run `command` (logging to `log`) unless the file `done` exists; fail when it is still missing after."""
    if not os.path.exists(done):
        os.makedirs(os.path.dirname(log), exist_ok=True)
        run(command, log)
    if not os.path.exists(done):
        raise SystemExit(f"{' '.join(command)} finished without writing {done}: see {log}")


def train(config, output, *opts, num_gpus=1):
    """train_net.py unless output/model_final.pth exists; returns (results, seconds per iteration)."""
    if not os.path.exists(os.path.join(output, "model_final.pth")):
        os.makedirs(output, exist_ok=True)
        run([sys.executable, "train_net.py", "--config-file", config, "--num-gpus", str(num_gpus),
             "OUTPUT_DIR", output, *opts], os.path.join(output, "stdout.log"))
    results_file = os.path.join(output, "results.json")  # absent for a run without test sets
    results = {}
    if os.path.exists(results_file):
        with open(results_file) as f:
            results = json.load(f)
    return results, seconds_per_iteration(output)


def seconds_per_iteration(output):
    """Median of the `time` entries of detectron2's metrics.json (data loading included)."""
    times = []
    with open(os.path.join(output, "metrics.json")) as f:
        for line in f:
            record = json.loads(line)
            if "time" in record:
                times.append(record["time"])
    times.sort()
    return times[len(times) // 2] if times else float("nan")


def seed_summary(runs, metrics=("mIoU",)):
    """The per-seed `runs` ({"mIoU", "s_per_iter", ...}) summarised: mean, min and max of each metric
    (keys <metric>_mean, _min, _max), median s/iter."""
    summary = {"s_per_iter": statistics.median(r["s_per_iter"] for r in runs)}
    for metric in metrics:
        values = [r[metric] for r in runs]
        summary.update({f"{metric}_mean": statistics.mean(values), f"{metric}_min": min(values),
                        f"{metric}_max": max(values)})
    return summary


def compare_rows(summary, a, b, metric="mIoU"):
    """Difference of rows a and b's means of `metric`, and whether it exceeds the larger of their seed spreads
    (max - min over seeds)."""
    diff = summary[a][f"{metric}_mean"] - summary[b][f"{metric}_mean"]
    spread = max(summary[k][f"{metric}_max"] - summary[k][f"{metric}_min"] for k in (a, b))
    return {"rows": [a, b], "metric": metric, "difference": diff, "largest_spread": spread,
            "exceeds_spread": abs(diff) > spread}


def load_seed_record(path, protocol):
    """
    {seed (str): {row: entry}} of a seed record written by `save_seed_record` (empty when `path` is
    absent); refuses a record of another protocol (what must match for two runs' seeds to share a table).
    """
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        record = json.load(f)
    theirs = record.get("protocol", {})
    differ = [f"{k}: {theirs.get(k)!r} there, {protocol[k]!r} here" for k in protocol if theirs.get(k) != protocol[k]]
    if differ:
        raise SystemExit(f"{path} records another protocol ({'; '.join(differ)}): pass another --record or delete it")
    return record["seeds"]


def save_seed_record(path, protocol, seeds):
    """Write the finished seeds' figures ({seed (str): {row: entry}}) with their protocol to `path`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, {"protocol": protocol, "seeds": seeds})


def run_seeds(seeds, record_path, protocol, row_keys, run_row, report):
    """
    The rows of every seed, whole seeds first (a stopped run leaves complete seeds): a seed in the record
    at `record_path` is taken from it, any other is run (`run_row(key, seed)` -> its entry, a dict) and
    added to the record. `report(runs, finished_seeds)` ({row: [entry per seed]}) is called after every
    seed; returns its last value.
    """
    recorded = load_seed_record(record_path, protocol)
    runs = {key: [] for key in row_keys}
    figures, finished = {}, []
    for seed in seeds:
        entries = recorded.get(str(seed))
        if entries is None:
            entries = {key: run_row(key, seed) for key in row_keys}
            recorded[str(seed)] = entries
            save_seed_record(record_path, protocol, recorded)
        for key in runs:
            runs[key].append(entries[key])
        finished.append(seed)
        figures = report(runs, list(finished))
    return figures


def write_comparison_report(output, seeds, summary, runs, comparisons, names, table_lines):
    """
    The seeded comparison's report: `table_lines` (a markdown table) followed by one line per comparison of
    `compare_rows` (rows named by `names`), written by `write_report` with the figures; returns the figures.
    """
    lines = list(table_lines) + [""]
    for c in comparisons:
        a, b = c["rows"]
        verdict = "larger" if c["exceeds_spread"] else "not larger"
        metric = "" if c["metric"] == "mIoU" else f"{c['metric']}: "
        unit = " mIoU" if c["metric"] == "mIoU" else ""
        lines.append(f"- {metric}{names[a]} - {names[b]}: {c['difference']:+.2f}{unit}, {verdict} than the seed "
                     f"spread ({c['largest_spread']:.2f})")
    figures = {"seeds": seeds, "rows": {k: {**summary[k], "runs": runs[k]} for k in summary}, "comparisons": comparisons}
    os.makedirs(output, exist_ok=True)
    write_report(output, figures, "\n".join(lines))
    return figures


def write_report(output, figures, table):
    """<output>/results.json (the figures) and <output>/results.md (the markdown table); prints the table."""
    write_json(os.path.join(output, "results.json"), figures)
    with open(os.path.join(output, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
