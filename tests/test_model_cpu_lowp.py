"""fastflow.FlowNet2S on the CPU in bfloat16 and float16, against the reference on real photos.

docs/design.md section 7: a 16-bit model's error against an fp64 reference is at most twice PyTorch's
own error in that precision on the same computation (the reference module cast to bf16 / fp16).
"""
import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err
from fastflow import model as model_mod
from fastflow.model import cpu as model_cpu
from fastflow.samples import sample_pair
from fastflow.reference import FlowNet2S as Reference


def _models(weights, dtype):
    fast = fastflow.FlowNet2S().eval()
    fast.load_state_dict(weights)
    ref = Reference().eval()
    ref.load_state_dict(weights)
    return fast.to(dtype), ref


def _oracle(ref, x):
    """fp64 reference output."""
    with torch.no_grad():
        return ref.double()(x.double()).float()


def _pytorch_lowp(ref, x, dtype):
    """PyTorch's own output in dtype: the reference module cast to it, fed the cast input."""
    with torch.no_grad():
        return ref.to(dtype)(x.to(dtype)).float()


# Real photographs: the motorcycle stereo pair and the shipped astronaut photo, awkward sizes.
CASES = [
    ("motorcycle", 1, 128, 192),
    ("motorcycle", 3, 64, 128),
    ("astronaut", 2, 192, 128),
]


def _pair(kind, b, h, w):
    return motorcycle_pair(h, w, b) if kind == "motorcycle" else sample_pair(h, w, b)


@pytest.mark.parametrize("dtype, kind, b, h, w",
                         [(torch.bfloat16, *c) for c in CASES] + [(torch.float16, *c) for c in CASES[:2]])
def test_within_twice_pytorch_lowp_error(weights, dtype, kind, b, h, w):
    fast, ref = _models(weights, dtype)
    x = _pair(kind, b, h, w)
    with torch.no_grad():
        got = fast(x)
    want = _oracle(ref, x)
    own = rel_err(_pytorch_lowp(ref, x, dtype), want)
    err = rel_err(got, want)
    print(f"{dtype} {kind} B={b} {h}x{w}: fastflow {err:.2e}, PyTorch {own:.2e}")
    assert got.shape == (b, 2, h, w) and got.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert err <= 2 * own
    assert err < (0.05 if dtype == torch.bfloat16 else 5e-3)  # and sized like the format's rounding


def test_bf16_uses_bf16_convolutions_when_onednn_has_them(weights):
    """The bf16 model really computes in bf16 (where oneDNN supports it): its output differs from
    the fp32 forward by a bf16-sized amount, not by zero."""
    if model_mod.cpu_compute_dtype(torch.bfloat16) != torch.bfloat16:
        pytest.skip("oneDNN has no bf16 convolutions on this CPU (the fallback is tested below)")
    fast, ref = _models(weights, torch.bfloat16)
    x = motorcycle_pair(64, 128)
    with torch.no_grad():
        got = fast(x)
        full = ref(x)
    assert 1e-4 < rel_err(got, full) < 0.05
    plan = fast._plans["cpu"]
    # The decoder's concat buffers are padded to whole AMX tiles.
    assert all(c % 32 == 0 for c in plan.params["concat_channels"].values())


@pytest.mark.parametrize("missing", ["onednn_bf16", "bf16_instructions", "env"])
def test_bf16_without_fast_bf16_computes_in_fp32(weights, monkeypatch, missing):
    """A CPU without bf16 instructions (oneDNN would emulate them, ~2.5x slower than fp32) or a
    oneDNN without bf16, or FASTFLOW_CPU_BF16=fp32: the bf16 model still runs, in float32 (faster
    than PyTorch's bf16 there, and more accurate)."""
    fast, ref = _models(weights, torch.bfloat16)
    if missing == "onednn_bf16":
        real = model_cpu.mkldnn_ok
        monkeypatch.setattr(model_cpu, "mkldnn_ok", lambda dt: dt == torch.float32 and real(dt))
    elif missing == "bf16_instructions":
        monkeypatch.setattr(model_cpu, "cpu_has_bf16_instructions", lambda: False)
    else:
        monkeypatch.setenv("FASTFLOW_CPU_BF16", "fp32")
    assert model_mod.cpu_compute_dtype(torch.bfloat16) == torch.float32
    x = motorcycle_pair(64, 128, 2)
    ref_b = Reference().eval()
    ref_b.load_state_dict({k: v.bfloat16().float() for k, v in weights.items()})  # the bf16 weights, in fp32
    with torch.no_grad():
        got = fast(x)
        want = ref_b(x)
    assert rel_err(got, want) <= 1e-5


def test_fp16_computes_in_fp32(weights):
    """A float16 model on the CPU is the float32 forward on its (exactly widened) fp16 weights."""
    fast, _ = _models(weights, torch.float16)
    ref32 = Reference().eval()
    ref32.load_state_dict({k: v.half().float() for k, v in weights.items()})
    x = motorcycle_pair(64, 192)
    with torch.no_grad():
        assert rel_err(fast(x), ref32(x)) <= 1e-5
    assert fast.conv1[0].weight.dtype == torch.float16  # the module itself stays fp16


def test_precision_switches_repack(weights):
    """fp32 -> bf16 -> fp16 -> fp32 on one module: each forward uses the current dtype's packing."""
    fast, ref = _models(weights, torch.float32)
    x = motorcycle_pair(64, 64)
    with torch.no_grad():
        want = ref(x)
        a = fast(x)
        fast.bfloat16()
        b = fast(x)
        fast.half()
        c = fast(x)
        fast.float()
        d = fast(x)
    rounded = Reference().eval()  # the weights after the trip through bf16 (exact in fp16 and fp32)
    rounded.load_state_dict({k: v.bfloat16().float() for k, v in weights.items()})
    with torch.no_grad():
        want_rounded = rounded(x)
    assert rel_err(a, want) <= 1e-5
    assert rel_err(b, want_rounded) < 0.05
    assert rel_err(c, want_rounded) <= 1e-5 and rel_err(d, want_rounded) <= 1e-5
    assert len(fast._plans) == 1  # stale packings dropped


def test_bf16_one_packing_many_shapes(weights):
    """Weights are packed once (with the first call's shape as a hint) and serve every batch and size."""
    fast, ref = _models(weights, torch.bfloat16)
    with torch.no_grad():
        for b, h, w in [(1, 64, 64), (2, 128, 64), (1, 64, 192)]:
            x = motorcycle_pair(h, w, b)
            want = ref(x)
            got = fast(x)
            assert got.shape == (b, 2, h, w)
            assert rel_err(got, want) < 0.02
    assert len(fast._plans) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_without_onednn_plain_pytorch_convolutions(weights, monkeypatch, dtype):
    """A torch without oneDNN: channels_last PyTorch convolutions and transposed convolutions
    (no sub-pixel decoder), still the reference's numbers."""
    monkeypatch.setattr(model_cpu, "mkldnn_ok", lambda dt: False)
    fast, ref = _models(weights, dtype)
    x = motorcycle_pair(64, 128)
    ref_w = Reference().eval()
    ref_w.load_state_dict({k: v.to(dtype).float() for k, v in weights.items()})
    with torch.no_grad():
        assert rel_err(fast(x), ref_w(x)) <= 1e-5  # bf16 without oneDNN computes in fp32


def test_cpu_bf16_switch(weights, monkeypatch):
    """FASTFLOW_CPU_BF16 is read at every forward: flipping it repacks; a bad value is an error."""
    if not model_cpu.mkldnn_ok(torch.bfloat16):
        pytest.skip("this torch has no oneDNN bf16")
    fast, ref = _models(weights, torch.bfloat16)
    x = motorcycle_pair(64, 64)
    with torch.no_grad():
        monkeypatch.setenv("FASTFLOW_CPU_BF16", "bf16")
        a = fast(x)
        assert fast._plans["cpu"].compute_dtype == torch.bfloat16
        monkeypatch.setenv("FASTFLOW_CPU_BF16", "fp32")
        b = fast(x)
        assert fast._plans["cpu"].compute_dtype == torch.float32 and len(fast._plans) == 1
        assert rel_err(a, b) > 1e-4  # really two computations
        monkeypatch.setenv("FASTFLOW_CPU_BF16", "fast")
        with pytest.raises(ValueError, match="FASTFLOW_CPU_BF16"):
            fast(x)


def test_cli_precision_bf16_uses_the_bf16_path(tmp_path, weights, monkeypatch):
    """`fastflow flow --precision bf16 --device cpu` runs the bf16 CPU forward (packed in bf16 where
    the CPU has it) and gives the fp32 command's flow within bf16 tolerance."""
    import numpy as np
    from PIL import Image

    from fastflow import cli, io

    img = np.asarray(Image.open(fastflow.samples.DATA_DIR + "/astronaut.jpg").convert("RGB"))
    Image.fromarray(img[0:120, 0:200]).save(tmp_path / "a.png")
    Image.fromarray(img[3:123, 5:205]).save(tmp_path / "b.png")
    ck = tmp_path / "ck.pth"
    torch.save({"state_dict": weights}, ck)
    computed = []
    real = model_mod.FlowNet2S._forward_cpu

    def spy(self, inputs):
        out = real(self, inputs)
        computed.append(self._plans["cpu"].compute_dtype)
        return out

    monkeypatch.setattr(model_mod.FlowNet2S, "_forward_cpu", spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", torch.backends.cudnn.allow_tf32)  # --precision fp32 sets it
    flows = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / f"{prec}.flo"
        rc = cli.main(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--checkpoint", str(ck),
                       "--device", "cpu", "--precision", prec, "-o", str(out)])
        assert rc == 0
        flows[prec] = torch.from_numpy(io.read_flow(str(out)).copy())
    assert computed == [torch.float32, model_mod.cpu_compute_dtype(torch.bfloat16)]
    assert rel_err(flows["bf16"], flows["fp32"]) < 0.02
