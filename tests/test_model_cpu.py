"""fastflow.FlowNet2S on the CPU: same parameters as the reference, same output on real photos."""
import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err
from fastflow.reference import FlowNet2S as Reference


@pytest.fixture(scope="module")
def models(weights):
    fast = fastflow.FlowNet2S().eval()
    fast.load_state_dict(weights)
    ref = Reference().eval()
    ref.load_state_dict(weights)
    return fast, ref


def test_same_state_dict_keys():
    assert list(fastflow.FlowNet2S().state_dict()) == list(Reference().state_dict())
    assert isinstance(fastflow.FlowNet2S(), Reference)


@pytest.mark.parametrize("batch, h, w", [(1, 384, 512), (3, 128, 192), (2, 64, 64)])
def test_forward_matches_reference_on_photos(models, batch, h, w):
    fast, ref = models
    x = motorcycle_pair(h, w, batch)
    with torch.no_grad():
        want = ref(x)
        got = fast(x)
    err = rel_err(got, want)
    print(f"CPU fastflow vs reference, B={batch} {h}x{w}: rel err {err:.2e}")
    assert got.shape == (batch, 2, h, w) and got.dtype == torch.float32
    assert err <= 1e-5


def test_noncontiguous_and_channels_last_input(models):
    fast, ref = models
    x = motorcycle_pair(64, 128, 2)
    with torch.no_grad():
        want = ref(x)
        assert rel_err(fast(x.transpose(3, 4).contiguous().transpose(3, 4)), want) <= 1e-5
        assert rel_err(fast(torch.cat((x, x), 4)[..., ::2]), ref(torch.cat((x, x), 4)[..., ::2])) <= 1e-5


def test_grad_mode_gives_plain_tensor(models):
    fast, ref = models
    x = motorcycle_pair(64, 64)
    out = fast(x)  # grad mode on: the fused path returns a tensor without history
    assert not out.requires_grad
    with torch.no_grad():
        assert rel_err(out, ref(x)) <= 1e-5


def test_training_mode_runs_reference(models, weights):
    fast = fastflow.FlowNet2S()
    fast.load_state_dict(weights)
    fast.train()
    x = motorcycle_pair(64, 64)
    outs = fast(x)
    assert len(outs) == 5 and outs[0].requires_grad
    outs[0].sum().backward()
    assert fast.conv1[0].weight.grad is not None


def test_weights_changed_after_first_forward_are_used(weights):
    fast = fastflow.FlowNet2S().eval()
    x = motorcycle_pair(64, 64)
    with torch.no_grad():
        before = fast(x)
        fast.load_state_dict(weights)
        after = fast(x)
        ref = Reference().eval()
        ref.load_state_dict(weights)
        assert rel_err(after, ref(x)) <= 1e-5
        assert rel_err(before, after) > 1e-3
        # in-place change of one parameter is seen too
        fast.predict_flow2.bias.add_(1.0)
        ref.predict_flow2.bias.add_(1.0)
        assert rel_err(fast(x), ref(x)) <= 1e-5


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 3, 2, 64, 100), "multiples of 64"),
        ((1, 3, 2, 30, 64), "multiples of 64"),
        ((1, 3, 64, 64), r"\(B, 3, 2, H, W\)"),
        ((1, 6, 64, 64), r"\(B, 3, 2, H, W\)"),
        ((1, 3, 3, 64, 64), r"\(B, 3, 2, H, W\)"),
        ((0, 3, 2, 64, 64), "empty batch"),
    ],
)
def test_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        fastflow.FlowNet2S().eval()(torch.zeros(shape))


def test_bad_dtype_and_device():
    m = fastflow.FlowNet2S().eval()
    with pytest.raises(ValueError, match="floating-point"):
        m(torch.zeros(1, 3, 2, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="model is on"):
        m(torch.zeros(1, 3, 2, 64, 64, device="meta"))



def test_copy_and_pickle(models, tmp_path):
    import copy

    fast, ref = models
    x = motorcycle_pair(64, 64)
    with torch.no_grad():
        fast(x)  # caches populated
        clone = copy.deepcopy(fast)
        assert rel_err(clone(x), ref(x)) <= 1e-5
        torch.save(fast, tmp_path / "m.pt")
        loaded = torch.load(tmp_path / "m.pt", weights_only=False)
        assert rel_err(loaded(x), ref(x)) <= 1e-5
        clone.load_state_dict(Reference().state_dict())  # the hook survives the copy
        assert rel_err(clone(x), ref(x)) > 1e-3


def test_no_cuda_build_fallback_returns_float32(models, monkeypatch):
    """A build without CUDA kernels runs the reference forward on the GPU; its output is float32 in
    every precision (exercised here on CPU tensors through the same method)."""
    import warnings

    from fastflow import _backend
    from fastflow.model import module as model_mod

    fast, _ = models
    monkeypatch.setattr(_backend, "cuda_compiled", lambda: False)
    monkeypatch.setattr(model_mod, "_WARNED_NO_CUDA", False)
    m = fastflow.FlowNet2S().eval().bfloat16()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = m._forward_cuda(motorcycle_pair(64, 64))
    assert out.dtype == torch.float32
    assert any("built without CUDA" in str(w.message) for w in caught)


def test_max_cached_shapes_validated(models):
    fast, _ = models
    m = fastflow.FlowNet2S().eval()
    m.max_cached_shapes = None
    with pytest.raises(ValueError, match="max_cached_shapes"):
        m._forward_fused(motorcycle_pair(64, 64), graph=False)
