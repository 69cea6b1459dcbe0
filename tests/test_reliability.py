"""Odd conditions and long runs: non-finite images, threads, streams, 1,000 forwards with flat memory,
CUDA errors surfacing as Python exceptions."""
import os
import subprocess
import sys
import tempfile
import threading

import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err, requires_cuda


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def test_nonfinite_images_poison_only_their_sample(model):
    """Documented: NaN/Inf in a pair makes its per-sample mean non-finite, so that sample's flow is
    NaN; the other samples of the batch are unaffected. No crash, no exception."""
    x = motorcycle_pair(64, 128, 3)
    with torch.no_grad():
        clean = model(x)
        x[1, 0, 0, 5, 7] = float("nan")
        x[2, 2, 1, 0, 0] = float("inf")
        out = model(x)
    assert torch.isnan(out[1]).all() and torch.isnan(out[2]).all()
    torch.testing.assert_close(out[0], clean[0])


def test_two_threads(model):
    xs = [motorcycle_pair(64, 128, 1), motorcycle_pair(128, 64, 2)]
    with torch.no_grad():
        want = [model(x) for x in xs]
    errors, results = [], {}

    def worker(i):
        try:
            for k in range(5):
                with torch.no_grad():
                    results[(i, k)] = model(xs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (i, _), out in results.items():
        torch.testing.assert_close(out, want[i])


def test_thousand_forwards_memory_flat(weights):
    """1,000 CPU forwards alternating shapes and dtypes (float32 / bfloat16 models): RSS stays flat."""
    m32 = fastflow.FlowNet2S().eval()
    m32.load_state_dict(weights)
    m16 = fastflow.FlowNet2S().eval()
    m16.load_state_dict(weights)
    m16 = m16.bfloat16()
    inputs = [torch.rand(1, 3, 2, 64, 64) * 255, torch.rand(1, 3, 2, 64, 128) * 255, torch.rand(1, 3, 2, 128, 64) * 255]
    combos = [(m, x) for m in (m32, m16) for x in inputs]

    def run(n):
        with torch.no_grad():
            for i in range(n):
                m, x = combos[i % len(combos)]
                m(x)

    run(60)  # warm-up: plans, allocator pools
    before = _rss_mb()
    run(1000)
    grown = _rss_mb() - before
    print(f"RSS growth over 1000 forwards: {grown:.1f} MB")
    assert grown < 40, f"RSS grew by {grown:.1f} MB over 1000 forwards"


# ------------------------------------------------------------------------------------------ CUDA


@requires_cuda
def test_cuda_thousand_forwards_and_cache_bound(weights):
    model = fastflow.FlowNet2S().cuda().eval()
    model.load_state_dict(weights)
    model.max_cached_shapes = 2
    shapes = [(1, 64, 64), (1, 64, 128), (2, 128, 64)]
    dtypes = [torch.float32, torch.float16]
    xs = {s: torch.rand(s[0], 3, 2, s[1], s[2], device="cuda") * 255 for s in shapes}

    def run(n):
        with torch.no_grad():
            for i in range(n):
                dt = dtypes[(i // len(shapes)) % 2]
                if model.conv1[0].weight.dtype != dt:
                    model.to(dt)
                model(xs[shapes[i % len(shapes)]])

    run(24)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    run(1000)
    torch.cuda.synchronize()
    grown = (torch.cuda.memory_allocated() - before) / 2**20
    print(f"CUDA memory growth over 1000 forwards: {grown:.1f} MB")
    assert grown < 64
    for plan in model._plans.values():
        assert len(plan.entries) <= 2


@requires_cuda
def test_cuda_two_streams(weights):
    model = fastflow.FlowNet2S().cuda().eval()
    model.load_state_dict(weights)
    xs = [motorcycle_pair(128, 192, 1, "cuda"), motorcycle_pair(128, 192, 1, "cuda").flip(-1).contiguous()]
    with torch.no_grad():
        want = [model(x).clone() for x in xs]
        streams = [torch.cuda.Stream(), torch.cuda.Stream()]
        outs = [[], []]
        for k in range(10):
            for i, s in enumerate(streams):
                with torch.cuda.stream(s):
                    outs[i].append(model(xs[i]))
        torch.cuda.synchronize()
    for i in (0, 1):
        for o in outs[i]:
            assert rel_err(o, want[i]) <= 1e-6


@requires_cuda
def test_cuda_kernel_error_names_the_op():
    """An illegal address inside a kernel becomes a RuntimeError naming the op (in a subprocess:
    such an error poisons the CUDA context of the process, as CUDA defines)."""
    code = (
        "import torch, fastflow\n"
        "from fastflow import _backend\n"
        "torch.zeros(1, device='cuda')\n"
        "C = _backend.load()\n"
        "try:\n"
        "    C.warp(16, 0, [1,1,1,1], 16, 0, [1,1,1,1], 1, 1, 64, 64, 16, [1,1,1,1], 0, False, 0,\n"
        "           torch.cuda.current_stream().cuda_stream)\n"
        "    torch.cuda.synchronize()\n"
        "except RuntimeError as e:\n"
        "    print('ERR', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=120)
    assert "ERR" in r.stdout, r.stdout + r.stderr
    assert "fastflow.warp" in r.stdout or "illegal" in r.stdout.lower()


@requires_cuda
def test_cuda_launch_error_keeps_process_usable():
    """A bad launch (too large a batch for the grid) is rejected with the op's name and the next
    call works."""
    from fastflow import ops

    with pytest.raises(ValueError, match="normalize_pack"):
        ops.normalize_pack(torch.zeros(70000, 3, 2, 1, 1, device="cuda"))
    x = torch.rand(1, 3, 2, 8, 8, device="cuda") * 255
    assert torch.isfinite(ops.normalize_pack(x)).all()


def test_model_device_mismatch_messages(model):
    with pytest.raises(ValueError, match="model is on cpu"):
        model(torch.zeros(1, 3, 2, 64, 64, device="meta"))


@pytest.mark.skipif(os.environ.get("CI") == "true" and not torch.cuda.is_available(), reason="GPU only")
@requires_cuda
def test_cuda_model_cpu_input(weights):
    model = fastflow.FlowNet2S().cuda().eval()
    with pytest.raises(ValueError, match="input is on cpu but the model is on cuda"):
        model(torch.zeros(1, 3, 2, 64, 64))
