"""GPU-suite records: the summary keys derived from the per-stage results, and merging records of one
csrc tree taken in separate device calls (e.g. build + smoke + tests in one, bench + layers in the next).

    python benchmarks/merge_records.py A.json B.json [-o benchmarks/results/NAME.json]

A record (docs/design.md section 8 plus ``stages``) keeps each stage's outcome under
``stages[name] = {"status": passed | failed | timed out | skipped | running | pending, "seconds",
"timeout_s", "note", "result": {...}}``; the top-level keys of the design (``tests``, ``sanitizer``,
``bench``) and the extras (``smoke``, ``layers``, ``targets``) are recomputed from them by
``finalize``. Merging keeps, per stage, the entry that says the most (finished beats timed out,
which beats killed while running, skipped, never started; among equals the later record wins).
"""
import argparse
import json
import sys

RAN = ("passed", "failed", "timed out")
# How much a stage entry says: merge keeps the highest (a finished stage beats one cut short).
STATUS_RANK = {"passed": 4, "failed": 4, "timed out": 3, "running": 2, "skipped": 1, "pending": 0}
TEST_STAGES = ("model_tests", "op_tests", "all_tests")
COUNT_KEYS = ("passed", "failed", "skipped", "errors")


def targets(rows):
    """The performance issue's targets, evaluated on this run's rows (None where a row is missing)."""
    def row(impl, prec, b, h=448, w=1024):
        for r in rows:
            if (r["impl"], r["precision"], r["batch"], r["height"], r["width"]) == (impl, prec, b, h, w):
                return r
        return None

    f16, comp = row("fastflow", "fp16", 1), row("torch_compile", "fp16", 1)
    f16b16 = row("fastflow", "fp16", 16)
    tf, ref_tf = row("fastflow", "tf32", 1), row("reference", "tf32", 1)
    f32, ref_32 = row("fastflow", "fp32", 1), row("reference", "fp32", 1)
    return {
        "fp16_b1_448x1024_ms": f16 and f16["median_ms"], "target_fp16_b1_ms": 0.25,
        "fp16_b1_vs_torch_compile": f16 and comp and comp["median_ms"] / f16["median_ms"], "target_vs_compile": 3.0,
        "fp16_b16_pairs_per_s": f16b16 and f16b16["pairs_per_s"], "target_b16_pairs_per_s": 6000,
        "tf32_vs_reference_defaults": tf and ref_tf and ref_tf["median_ms"] / tf["median_ms"], "target_tf32": 1.5,
        "fp32_vs_reference_tf32_off": f32 and ref_32 and ref_32["median_ms"] / f32["median_ms"], "target_fp32": 1.0,
        "fp16_b1_peak_mem_mb": f16 and f16["peak_mem_mb"], "target_peak_mem_mb": 200,
    }


def _result(record, stage):
    return (record.get("stages", {}).get(stage) or {}).get("result") or {}


def finalize(record):
    """Recompute the summary keys from ``record["stages"]`` (in place; returns the record)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    failed, measured = [], []
    for stage in TEST_STAGES:
        res = _result(record, stage)
        for k in COUNT_KEYS:
            counts[k] += int((res.get("counts") or {}).get(k) or 0)
        failed += res.get("failed_tests", [])
        measured += res.get("measured_errors", [])
    record["tests"] = counts
    record["tests_failed"] = failed[:100]
    record["tests_measured_errors"] = measured[:200]
    record["sanitizer"] = _result(record, "sanitizer").get("tools", {})
    rows = _result(record, "bench").get("rows", []) + _result(record, "compile").get("rows", [])
    record["bench"] = rows
    record["layers"] = _result(record, "layers").get("rows", [])
    smoke = _result(record, "smoke")
    record["smoke"] = {k: smoke[k] for k in ("passed", "failed", "device") if k in smoke}
    record["targets"] = targets([r for r in rows if "median_ms" in r])
    return record


def merge(records):
    trees = {r.get("csrc_tree") for r in records}
    if len(trees) != 1:
        raise SystemExit(f"records verify different csrc trees: {sorted(map(str, trees))}")
    gpus = {r.get("gpu") for r in records}
    if len(gpus) != 1:
        raise SystemExit(f"records come from different GPUs: {sorted(map(str, gpus))}")
    out = dict(records[0])
    stages = dict(out.get("stages", {}))
    for r in records[1:]:
        for k, v in r.items():
            if k not in out:
                out[k] = v
        for name, entry in r.get("stages", {}).items():
            have = stages.get(name)
            if have is None or STATUS_RANK.get(entry.get("status"), 0) >= STATUS_RANK.get(have.get("status"), 0):
                stages[name] = entry
    out["stages"] = stages
    out["merged_from"] = [f"{r.get('date')} {str(r.get('commit', ''))[:8]} {r.get('suite', {}).get('started', '')}"
                          for r in records]
    return finalize(out)


def main():
    ap = argparse.ArgumentParser(description="Merge GPU-suite records of one csrc tree into one.")
    ap.add_argument("records", nargs="+")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    recs = []
    for p in args.records:
        try:
            with open(p) as f:
                recs.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"merge_records: cannot read {p}: {e}")
    merged = merge(recs)
    text = json.dumps(merged, indent=1)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
