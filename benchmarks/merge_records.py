"""Merge GPU-suite records of one csrc tree taken in separate device calls (e.g. tests + sanitizer
in one, bench + layers in the next) into one record.

    python benchmarks/merge_records.py A.json B.json [-o benchmarks/results/NAME.json]
"""
import argparse
import json
import sys

STAGE_KEYS = ("tests", "tests_failed", "tests_rc", "tests_seconds", "tests_measured_errors", "sanitizer",
              "sanitizer_op_tests", "bench", "layers")


def merge(records):
    trees = {r.get("csrc_tree") for r in records}
    if len(trees) != 1:
        raise SystemExit(f"records verify different csrc trees: {sorted(map(str, trees))}")
    gpus = {r.get("gpu") for r in records}
    if len(gpus) != 1:
        raise SystemExit(f"records come from different GPUs: {sorted(map(str, gpus))}")
    out = dict(records[0])
    for r in records[1:]:
        for k, v in r.items():
            # later records win for stage results they actually ran (an empty test count is a default)
            if k in STAGE_KEYS and k == "tests" and not any(v.values()):
                continue
            if k not in out or k in STAGE_KEYS:
                out[k] = v
    out["merged_from"] = [f"{r.get('date')} {r.get('commit', '')[:8]}" for r in records]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("records", nargs="+")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    recs = []
    for p in args.records:
        with open(p) as f:
            recs.append(json.load(f))
    merged = merge(recs)
    text = json.dumps(merged, indent=1)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
