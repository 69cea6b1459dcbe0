"""The GPU suite's smoke stage: every fastflow op and every FlowNet2-S layer shape at small sizes in
fp32/tf32/fp16/bf16 against the reference, then the fused model (graph and eager, four precisions).

One line per case, printed as soon as it is measured:
    CASE <name>: ok <rel err> (bound <bound>)     or     CASE <name>: FAIL <what went wrong>
A failing case never stops the others (a sticky CUDA error then shows as every later case failing).
Exit status: 0 all cases ok, 1 some failed.

    python benchmarks/smoke_cuda.py [--device cuda|cpu] [--tiny] [--only conv,model]

``--device cpu`` runs the same code paths on the CPU versions of the ops (conv/deconv as host
emulations of the CUDA kernels' tiling, the model through the fused forward's orchestration);
``--tiny`` shrinks every shape (the suite's dry run without a GPU). ``--simt`` runs the CUDA kernels
themselves on the CPU through the SIMT host runtime (``fastflow.ops.simt()``, when the build has
``fastflow._simt``). Tolerances are docs/design.md section 7's.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

# Output-rounding bounds of the element-wise ops (both sides round the same exact value once).
ROUND = {"fp32": 1e-6, "fp16": 1e-3, "bf16": 8e-3}
GROUPS = ("io", "flow_head", "conv", "deconv", "model")


class Smoke:
    def __init__(self):
        self.failed = 0
        self.cases = 0

    def case(self, name, fn):
        """fn() -> (err, bound), bound None where fn asserted the section 7 rule itself; prints one
        line, never raises."""
        self.cases += 1
        try:
            err, bound = fn()
            if bound is not None and not err <= bound:  # NaN fails too
                raise AssertionError(f"rel err {err:.3e} > bound {bound:.3e}")
            rule = "section 7 rule checked" if bound is None else f"bound {bound:.1e}"
            print(f"CASE {name}: ok {err:.3e} ({rule})", flush=True)
        except BaseException as e:  # noqa: BLE001 - report and go on
            if isinstance(e, KeyboardInterrupt):
                raise
            self.failed += 1
            msg = " ".join(str(e).split())[:300]
            print(f"CASE {name}: FAIL {type(e).__name__}: {msg}", flush=True)


class _NoPytest:
    """Stands in for pytest when the machine lacks it: the test helpers this script imports only use
    it for decorators (marks, fixtures, params) at import time."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else self


def _in_simt(ops, fn):
    with ops.simt():
        return fn()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tiny", action="store_true", help="smallest shapes (CPU dry run)")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    ap.add_argument("--simt", action="store_true",
                    help="CPU tensors run the CUDA kernels themselves through the SIMT host runtime "
                         "(fastflow.ops.simt(), with its race/bounds checks); implies --device cpu")
    ap.add_argument("--precisions", default="fp32,tf32,fp16,bf16", help="of the conv/deconv/model cases")
    args = ap.parse_args(argv)
    precisions = [q for q in args.precisions.split(",") if q]
    if not precisions or any(q not in ("fp32", "tf32", "fp16", "bf16") for q in precisions):
        ap.error(f"--precisions must name some of fp32,tf32,fp16,bf16, got {args.precisions!r}")
    if args.simt:
        args.device = "cpu"
    groups = [g for g in args.only.split(",") if g]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown group(s) {','.join(bad)}; groups: {','.join(GROUPS)}")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("smoke: no CUDA GPU visible to PyTorch (use --device cpu for the CPU code paths)", flush=True)
        return 1
    try:  # the test helpers import pytest; a machine without it gets the stub
        import pytest
    except ImportError:
        pytest = _NoPytest()
    sys.modules.setdefault("pytest", pytest)
    import _igemm_util as igemm
    import test_flow_head as heads
    from conftest import motorcycle_pair, rel_err

    import fastflow
    from fastflow import ops
    from fastflow import reference as ref
    from fastflow.precision import torch_tf32 as tf32_mode

    dev = args.device
    t0 = time.time()
    s = Smoke()
    if args.simt:
        if not (fastflow.build_info().get("simt") and hasattr(ops, "simt")):
            print("smoke: --simt needs the SIMT host runtime fastflow._simt, which this build lacks", flush=True)
            return 2
        plain = s.case
        s.case = lambda name, fn: plain(name + " simt", lambda: _in_simt(ops, fn))
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    size = (64, 64) if args.tiny else (64, 128)
    batch = 1 if args.tiny else 2
    print(f"smoke: fastflow {fastflow.build_info()} on {dev}"
          f"{' ' + torch.cuda.get_device_name() if dev == 'cuda' else ''}, layers at {size[0]}x{size[1]}", flush=True)

    if "io" in groups:
        g = torch.Generator().manual_seed(0)
        pair = (torch.rand(2, 3, 2, 37, 53, generator=g) * 255).to(dev)
        flow2 = (torch.randn(2, 2, 9, 13, generator=g) * 3).to(dev)
        x = torch.randn(2, 5, 33, 47, generator=g).to(dev)
        flow = (torch.randn(2, 2, 33, 47, generator=g) * 8).to(dev)
        for p, dt in dtypes.items():
            s.case(f"normalize_pack {p}", lambda dt=dt, p=p: (
                rel_err(ops.normalize_pack(pair, 255.0, 8, dt), ref.normalize_pack(pair, 255.0, 8, dt)), ROUND[p]))
            for pad in ("border", "zeros"):
                s.case(f"warp {pad} {p}", lambda dt=dt, p=p, pad=pad: (
                    rel_err(ops.warp(x.to(dt), flow, pad), ref.warp(x.to(dt), flow, pad)), ROUND[p]))
        s.case("warp zeros mask", lambda: (
            rel_err(ops.warp(x, flow, "zeros", return_mask=True)[1], ref.warp(x, flow, "zeros", return_mask=True)[1]), 0.0))
        s.case("upsample_flow", lambda: (rel_err(ops.upsample_flow(flow2, 20.0), ref.upsample_flow(flow2, 20.0)), 1e-6))

    if "flow_head" in groups:
        shapes = [(1, 2), (2, 3), (3, 4), (5, 6), (6, 9)]
        for p, dt in dtypes.items():
            for i, (cin, cp, nxt) in enumerate(heads.HEADS):
                def one(i=i, cin=cin, cp=cp, nxt=nxt, dt=dt):
                    a = heads.make_case(batch, cin, cp, *shapes[i], dt, dev, nxt is not None, seed=i)
                    out = ops.flow_head(a[0], ops.pack_flow_head(*a[1:]))
                    heads.check(*a, *out)  # the section 7 rules, asserted
                    return rel_err(out[0], heads.ref64(*a)[0]), None
                s.case(f"flow_head predict_flow{6 - i} {p}", one)

    for p in [q for q in igemm.PRECISIONS if q in precisions]:
        if "conv" in groups:
            for name, cin, cx, cout, k, st, h, w in igemm.encoder_inputs(*size):
                s.case(f"conv {name} {p} {h}x{w}", lambda: (
                    igemm.check_conv(p, batch, cin, cout, k, st, h, w, dev, cx=cx), None))
        if "deconv" in groups:
            for name, cin, cx, cout, h, w in igemm.decoder_inputs(*size):
                s.case(f"deconv {name} {p} {h}x{w}", lambda: (
                    igemm.check_deconv(p, batch, cin, cout, h, w, dev, cx=cx), None))
    print(f"smoke: ops done in {time.time() - t0:.0f} s", flush=True)

    if "model" in groups:
        mh, mw = (64, 64) if args.tiny else (128, 192)
        torch.manual_seed(1)
        state = ref.FlowNet2S().state_dict()
        x = motorcycle_pair(mh, mw, batch, dev)
        with torch.no_grad():
            r64 = ref.FlowNet2S().eval()
            r64.load_state_dict(state)
            want = r64.to(dev).double()(x.double())
            del r64
            for p, dt in (("fp32", torch.float32), ("tf32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
                if p not in precisions:
                    continue
                bound = {"fp32": 1e-5, "tf32": 5e-3}.get(p)
                if bound is None:  # twice PyTorch's own 16-bit error (eager, channels_last) on the same input
                    try:
                        r16 = ref.FlowNet2S().eval()
                        r16.load_state_dict(state)
                        r16 = r16.to(dev).to(dt).to(memory_format=torch.channels_last)
                        bound = 2 * rel_err(r16(x.to(dt)).float(), want)
                        del r16
                    except RuntimeError as e:  # a CPU PyTorch without that 16-bit convolution
                        bound = {"fp16": 5e-3, "bf16": 4e-2}[p]
                        print(f"smoke: no PyTorch {p} reference here ({type(e).__name__}); bound {bound}", flush=True)
                m = fastflow.FlowNet2S().eval()
                m.load_state_dict(state)
                m = m.to(dev).to(dt)
                for graph in ((True, False) if dev == "cuda" else (False,)):
                    def run(m=m, graph=graph, p=p, bound=bound):
                        with tf32_mode(p == "tf32"):
                            if dev == "cuda" or args.simt:  # simt: the fused CUDA forward on the CPU
                                m.use_cuda_graph = graph
                                out = m(x)
                                again = m(x)  # second call: graph replay / arena reuse
                            else:  # the CUDA orchestration through the ops' CPU versions
                                out = m._forward_fused(x, graph=False)
                                again = m._forward_fused(x, graph=False)
                        if out.shape != (batch, 2, mh, mw) or out.dtype != torch.float32:
                            raise AssertionError(f"output {tuple(out.shape)} {out.dtype}")
                        if not torch.equal(out, again):
                            raise AssertionError("second call differs from the first (not deterministic)")
                        return rel_err(out, want), bound
                    s.case(f"model {p} {'graph' if graph else 'eager'} B{batch} {mh}x{mw}", run)
    if dev == "cuda":
        print(f"smoke: peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB", flush=True)
    print(f"smoke: {s.cases - s.failed} of {s.cases} cases ok, {s.failed} failed, {time.time() - t0:.0f} s", flush=True)
    return 1 if s.failed else 0


if __name__ == "__main__":
    sys.exit(main())
