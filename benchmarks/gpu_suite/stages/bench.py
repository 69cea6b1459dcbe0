"""The timing stages: bench (fastflow fp16/bf16/tf32/fp32 against the reference and eager fp16
channels_last, batch 1 and 16, 448x1024, peak memory; benchmarks/bench_worker.py, one process per
config), compile (torch.compile max-autotune fp16) and layers (per-layer table against cuDNN,
benchmarks/bench_conv_layers.py)."""
import json
import os
import time

from ..procs import BENCH, Proc, first_line

# Dense tensor-core / FMA peaks of an H200 / H100 SXM (TFLOP/s), for "% of peak" in the per-layer table.
PEAK_TFLOPS = {"fp16": 989.0, "bf16": 989.0, "tf32": 494.0, "fp32": 67.0}


def bench_rows(s, name, deadline, configs, candidates, repeats, warmup, device):
    """benchmarks/bench_worker.py, one process per config with every candidate (interleaved). If it
    dies (a sticky CUDA error), fresh ``--each`` processes redo the candidates without a row, one
    call each, and one that dies again is recorded as failed and left out of the next process."""
    rows, failures, timed_out = [], [], False
    for b, h, w in configs:
        todo = list(candidates)
        for attempt in range(len(candidates) + 1):
            if not todo:
                break
            if deadline - time.time() < 10:
                timed_out = True
                break
            tag = f"{name}_b{b}_{h}x{w}_{attempt}"
            jsonl = os.path.join(s.logs, tag + ".jsonl")
            log = s.live(tag)
            cmd = [s.py, os.path.join(BENCH, "bench_worker.py"), "--batch", str(b), "--size", f"{h}x{w}",
                   "--device", device, "--repeats", str(repeats), "--warmup", str(warmup),
                   "--candidates", ",".join(todo), "--jsonl", jsonl] + (["--each"] if attempt else [])
            p = Proc(cmd, log, s.env)
            p.wait(deadline)
            s.settle(p)
            done = []
            if os.path.exists(jsonl):
                with open(jsonl) as f:
                    done = [json.loads(ln) for ln in f if ln.strip()]
            for d in done:
                (failures if "error" in d else rows).append(d)
            s.record["stages"][name]["result"] = {"rows": rows + failures}  # kept if the call is killed
            s.save()
            todo = [c for c in todo if c not in {d["candidate"] for d in done}]
            if p.timed_out:
                timed_out = True
                break
            if p.rc != 0 and attempt and todo and not any("error" in d for d in done):
                # an --each process died inside todo[0] without a word: record it, go on without it
                failures.append({"candidate": todo[0], "batch": b, "height": h, "width": w,
                                 "error": f"worker died (rc {p.rc}): {first_line(p.text())}"})
                todo = todo[1:]
    status = "failed" if failures else ("timed out" if timed_out else "passed")
    note = f"{len(rows)} rows" + (f", {len(failures)} failed: " + "; ".join(
        f"{f['candidate']} b{f['batch']}: {f['error'][:120]}" for f in failures) if failures else "")
    return status, note[:600], {"rows": rows + failures}


def _registers():
    """sm_90 registers of the igemm kernels of this tree ({(config, mode): n}) from ptxas, or None."""
    try:
        import gpu_report  # benchmarks/ is on sys.path (suite.py puts it there)

        usage = gpu_report.ptxas_usage("sm_90")
    except Exception:  # noqa: BLE001 - no nvcc, or it failed: the forecast's defaults
        return None
    return {k: v["registers"] for k, v in usage.items()} if usage else None


def add_forecast(rows, layer_rows=None):
    """fastflow.perf.forecast beside the measured figures: ``forecast_ms`` on each fastflow bench
    row and ``forecast_us`` on each per-layer row (a labelled model: NOTES.md explains the gap)."""
    try:
        from fastflow.perf.forecast import forecast_forward, forecast_layers
    except ImportError:
        return
    regs = _registers()
    modes = {"fp16": 0, "bf16": 1, "tf32": 2, "fp32": 3}

    def regs_for(prec):
        if not regs:
            return None
        return {cfg: regs.get((cfg, modes[prec]), regs.get((1, modes[prec]))) for cfg in (0, 1)}

    for r in rows:
        if r.get("impl") == "fastflow" and "median_ms" in r:
            f = forecast_forward(r["height"], r["width"], r["batch"], r["precision"], "sm_90", regs_for(r["precision"]))
            r["forecast_ms"] = f["total_ms"]
            r["measured_over_forecast"] = r["median_ms"] / f["total_ms"]
    by_key = {}
    for r in layer_rows or []:
        if "layer" not in r:
            continue
        key = (r["precision"], r["batch"], r["height"], r["width"])
        if key not in by_key:
            by_key[key] = {x.layer: x for x in forecast_layers(key[2], key[3], key[1], key[0], "sm_90", regs_for(key[0]))}
        f = by_key[key].get(r["layer"])
        if f is not None:
            r["forecast_us"] = f.time_us


def bench(s, deadline):
    if not s.has_gpu:
        return bench_rows(s, "bench", deadline, [(1, 64, 64)], ["reference:fp32", "fastflow:fp32"], 2, 1, "cpu")
    configs = [(1, 448, 1024), (16, 448, 1024)]
    if not s.args.quick:
        configs += [(1, 384, 512), (16, 384, 512)]
    cands = ["reference:tf32", "reference:fp32", "eager_fp16_cl:fp16",
             "fastflow:fp16", "fastflow:bf16", "fastflow:tf32", "fastflow:fp32"]
    status, note, result = bench_rows(s, "bench", deadline, configs, cands, s.args.repeats, 5, "cuda")
    add_forecast(result["rows"])
    return status, note, result


def torch_compile(s, deadline):
    return bench_rows(s, "compile", deadline, [(1, 448, 1024)], ["torch_compile:fp16"], s.args.repeats, 5, "cuda")


def layers(s, deadline):
    rows, notes, status = [], [], "passed"
    precisions = ["fp16"] + ([] if s.args.quick else ["tf32"])
    for prec in precisions:
        path = os.path.join(s.logs, f"layers_{prec}.json")
        log = s.live(f"layers_{prec}")
        p = Proc([s.py, os.path.join(BENCH, "bench_conv_layers.py"), "--precision", prec, "--batch", "1",
                  "--height", "448", "--width", "1024", "--json", path], log, s.env)
        p.wait(deadline)
        text = p.text()
        s.settle(p)
        if p.rc != 0 or not os.path.exists(path):
            status = "timed out" if p.timed_out else "failed"
            notes.append(f"{prec}: rc {p.rc}: {first_line(text)}")
            rows.append({"precision": prec, "error": first_line(text, 400)})
            break
        with open(path) as f:
            for r in json.load(f)["layers"]:
                r["fastflow_pct_of_peak"] = 100.0 * r["fastflow_tflops"] / PEAK_TFLOPS[prec]
                r.setdefault("precision", prec)
                rows.append(r)
    add_forecast([], rows)
    return status, "; ".join(notes) or f"{len(rows)} layer rows", {"rows": rows}
