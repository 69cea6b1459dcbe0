"""FlowNet2S built, loaded and run inside torch.inference_mode() / no_grad, in any mix (issue 15, point 1)."""
import itertools

import pytest
import torch

import fastflow
from conftest import rel_err, requires_cuda
from fastflow.reference import FlowNet2S as Reference


@pytest.fixture(scope="module")
def setup(weights):
    ref = Reference().eval()
    ref.load_state_dict(weights)
    torch.manual_seed(7)
    x = torch.rand(1, 3, 2, 64, 128) * 255
    with torch.no_grad():
        want = ref(x)
    return x, want


MODES = {
    "plain": lambda: torch.enable_grad(),
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


BUILD_LOAD = [("inference_mode", "inference_mode"), ("inference_mode", "plain"), ("plain", "inference_mode"),
              ("no_grad", "no_grad")]


@pytest.mark.parametrize("build, load, run", [(b, l, r) for (b, l) in BUILD_LOAD for r in MODES])
def test_any_mix_on_cpu(weights, setup, build, load, run):
    x, want = setup
    with MODES[build]():
        m = fastflow.FlowNet2S().eval()
    with MODES[load]():
        m.load_state_dict(weights)
    with MODES[run]():
        got = m(x)
    assert rel_err(got, want) < 1e-5
    # and it keeps working after the block, in every mode, and its output is an ordinary tensor
    with torch.inference_mode():
        assert rel_err(m(x), want) < 1e-5
    out = m(x)
    out.mul_(1.0)  # an inference tensor would refuse this outside inference_mode
    assert not out.is_inference()


def test_from_checkpoint_and_dtype_changes_inside_inference_mode(weights, setup, tmp_path):
    x, want = setup
    ck = tmp_path / "ck.pth.tar"
    torch.save({"state_dict": weights}, ck)
    with torch.inference_mode():
        m = fastflow.FlowNet2S.from_checkpoint(ck)
        assert rel_err(m(x), want) < 1e-5
        m = m.to(torch.float64).float()  # dtype round trip inside the block
        got = m(x)
    assert rel_err(got, want) < 1e-5
    assert rel_err(m(x), want) < 1e-5
    assert not any(p.is_inference() for p in m.parameters())


def test_weight_change_after_inference_mode_run_is_seen(weights, setup):
    """Packed weights made during an inference_mode run are rebuilt after an in-place update."""
    x, want = setup
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    with torch.inference_mode():
        assert rel_err(m(x), want) < 1e-5
        with torch.no_grad():
            m.predict_flow2.bias.add_(1.0)  # in-place inside inference mode bumps the version counter
        moved = m(x)
    assert rel_err(moved, want) > 1e-3
    with torch.no_grad():
        m.predict_flow2.bias.sub_(1.0)
    assert rel_err(m(x), want) < 1e-5


def test_inference_tensor_parameters_assigned(weights, setup):
    """load_state_dict(assign=True) with inference tensors (loaded inside the block) still runs."""
    x, want = setup
    with torch.inference_mode():
        state = {k: v.clone() for k, v in weights.items()}
        m = fastflow.FlowNet2S().eval()
        m.load_state_dict(state, assign=True)
        assert rel_err(m(x), want) < 1e-5
    assert rel_err(m(x), want) < 1e-5


def test_fused_orchestration_inside_inference_mode(weights, setup):
    """The CUDA forward's orchestration (arena written in place), run on the CPU through the host
    emulations: first run inside inference_mode, then outside, then inside again."""
    from fastflow.precision import torch_tf32 as tf32_mode

    x, want = setup
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    with tf32_mode(False):  # strict fp32 emulation
        with torch.inference_mode():
            a = m._forward_fused(x, graph=False)
        with torch.inference_mode(False), torch.no_grad():
            b = m._forward_fused(x, graph=False)
        with torch.inference_mode():
            c = m._forward_fused(x, graph=False)
    for got in (a, b, c):
        assert rel_err(got, want) < 1e-5


@requires_cuda
@pytest.mark.cuda
def test_any_mix_on_cuda(weights, setup):
    x, want = setup
    x, want = x.cuda(), want.cuda()
    for build, run in itertools.product(MODES, repeat=2):
        with MODES[build]():
            m = fastflow.FlowNet2S().eval()
            m.load_state_dict(weights)
            m = m.cuda()
        torch.backends.cudnn.allow_tf32 = False
        try:
            with MODES[run]():
                got = m(x)
            after = m(x)
        finally:
            torch.backends.cudnn.allow_tf32 = True
        assert rel_err(got, want) < 1e-4 and rel_err(after, want) < 1e-4, (build, run)
