"""One benchmark configuration for the GPU suite: the candidates (``impl:precision`` as in
fastflow.bench) timed by ``fastflow.bench.run_model_bench``, one JSON line per candidate appended to
``--jsonl``: its row, or ``{"candidate", ..., "error"}``.

    python benchmarks/bench_worker.py --batch 1 --size 448x1024 --device cuda \\
        --candidates reference:fp32,fastflow:fp16 --jsonl rows.jsonl [--each]

Default: all candidates in one call (interleaved rounds, one oracle). ``--each``: one call per
candidate, each line written as soon as it exists, so rows measured before a crash survive it. An
exception that escapes the benchmark (e.g. a sticky CUDA error raised while freeing memory) ends the
process with status 3 (with ``--each``, after the error line of the candidate in flight): the suite
then starts a fresh ``--each`` process for the candidates left.
"""
import argparse
import json
import sys
import traceback


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--size", required=True, help="HxW")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--candidates", required=True, help="comma-separated impl:precision")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--each", action="store_true", help="one run_model_bench call per candidate")
    args = ap.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size must be HxW, got {args.size!r}")
    cands = [c for c in args.candidates.split(",") if c]
    if any(c.count(":") != 1 for c in cands):
        ap.error(f"--candidates must be impl:precision items, got {args.candidates!r}")

    from fastflow.bench import rows_to_dicts, run_model_bench

    def emit(d):
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(d) + "\n")

    groups = [[c] for c in cands] if args.each else [cands]
    for group in groups:
        where = {"batch": args.batch, "height": h, "width": w}
        said = []

        def log(s, said=said):
            said.append(s)
            print(f"  {s}", flush=True)

        print(f"bench_worker: {','.join(group)} batch {args.batch} {h}x{w} on {args.device}", flush=True)
        try:
            rows = run_model_bench(h, w, args.batch, args.device, warmup=args.warmup, repeats=args.repeats,
                                   include_compile=any(c.startswith("torch_compile") for c in group), only=group,
                                   log=log)
        except BaseException as e:  # noqa: BLE001 - the process is done for; say why first
            traceback.print_exc()
            if len(group) == 1:  # --each: this candidate is the one that broke the process
                emit(dict(where, candidate=group[0], error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"))
            return 3
        got = {f"{r['impl']}:{r['precision']}": r for r in rows_to_dicts(rows)}
        for cand in group:
            if cand in got:
                emit(dict(got[cand], candidate=cand))
            else:
                name = cand.split(":")[0] + " " + cand.split(":")[1] + ":"
                why = next((s.strip() for s in said if s.strip().startswith(name)), "no row (not a candidate on this device?)")
                emit(dict(where, candidate=cand, error=why[:300]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
