"""fastflow.FlowNet2S exports and compiles like the reference (issue 15, point 5): torch.onnx.export
(default exporter and dynamo=False), torch.export.export, torch.jit.trace and torch.compile(fullgraph=True)
capture the reference's graph, and ONNX Runtime runs the export to the reference's output."""
import warnings

import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err
from fastflow.reference import FlowNet2S as Reference

H, W = 64, 128


@pytest.fixture(scope="module")
def models(weights):
    ref = Reference().eval()
    ref.load_state_dict(weights)
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    x = motorcycle_pair(H, W, 1)
    with torch.no_grad():
        want = ref(x)
        assert rel_err(m(x), want) < 1e-5  # a plain call runs the fused forward...
    return m, ref, x, want


def _call_targets(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module")]


def test_torch_export_gives_the_reference_graph(models):
    m, ref, x, want = models
    ep, ep_ref = torch.export.export(m, (x,)), torch.export.export(ref, (x,))
    targets = _call_targets(ep.graph_module)
    assert targets == _call_targets(ep_ref.graph_module)
    assert sum("conv" in t for t in targets) == 23  # 10 encoder + 5 flow heads + 4 deconv + 4 flow upsamplers
    with torch.no_grad():
        assert rel_err(ep.module()(x), want) < 1e-6


def test_jit_trace_gives_the_reference_graph(models):
    m, ref, x, want = models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the shape checks being constants
        tr = torch.jit.trace(m, (x,), check_trace=False)
        tr_ref = torch.jit.trace(ref, (x,), check_trace=False)
    kinds = [n.kind() for n in tr.inlined_graph.nodes()]
    assert kinds == [n.kind() for n in tr_ref.inlined_graph.nodes()]
    assert "aten::_convolution" in kinds
    with torch.no_grad():
        assert rel_err(tr(x), want) < 1e-6


def test_compile_fullgraph_captures_the_reference_graph(models):
    """torch.compile(fullgraph=True) has no graph break (the fused path's lock and caches are not
    traced); a recording backend checks the captured graph is the reference's."""
    m, ref, x, want = models
    graphs = {}

    def backend(name):
        def record(gm, example_inputs):
            graphs[name] = _call_targets(gm)
            return gm.forward
        return record

    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(m, fullgraph=True, backend=backend("fastflow"))(x)
        torch.compile(ref, fullgraph=True, backend=backend("reference"))(x)
    torch._dynamo.reset()
    assert graphs["fastflow"] == graphs["reference"] and len(graphs["fastflow"]) > 25
    assert rel_err(got, want) < 1e-6


def test_fake_tensor_input_runs_the_reference_forward(models):
    from torch._subclasses.fake_tensor import FakeTensorMode

    m, _, x, _ = models
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        out = m(mode.from_tensor(x))
    assert tuple(out.shape) == (1, 2, H, W)


@pytest.mark.parametrize("dynamo", [True, False], ids=["default-exporter", "dynamo=False"])
def test_onnx_export_matches_reference_in_onnxruntime(models, tmp_path, dynamo):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m, ref, x, want = models
    paths = {}
    for name, mod in (("fastflow", m), ("reference", ref)):
        paths[name] = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(mod, (x,), str(paths[name]))  # the default exporter (Dynamo in torch >= 2.9)
            else:
                torch.onnx.export(mod, (x,), str(paths[name]), dynamo=False)
    ops = {k: [n.op_type for n in onnx.load(str(p)).graph.node] for k, p in paths.items()}
    assert ops["fastflow"] == ops["reference"] and ops["fastflow"].count("Conv") + ops["fastflow"].count("ConvTranspose") == 23
    sess = ort.InferenceSession(str(paths["fastflow"]), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert out.shape == (1, 2, H, W)
    assert rel_err(torch.from_numpy(out), want) < 1e-5
