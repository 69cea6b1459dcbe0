"""Checkpoint loading: the official layout, bare state dicts, module. prefixes, and bad files."""
import numpy as np
import pytest
import torch

import fastflow
from fastflow.model import CheckpointError
from fastflow.reference import FlowNet2S as Reference


def _same_params(model, state):
    own = model.state_dict()
    return set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in state)


def test_official_layout(tmp_path, weights):
    # flownet2-pytorch saves {'arch', 'epoch', 'state_dict', 'best_EPE'}; best_EPE a numpy scalar.
    path = tmp_path / "FlowNet2-S_checkpoint.pth.tar"
    torch.save({"epoch": 1, "state_dict": weights, "best_EPE": np.float64(2.71), "arch": "FlowNet2S"}, path)
    model = fastflow.FlowNet2S.from_checkpoint(path)
    assert not model.training
    assert _same_params(model, weights)


def test_bare_and_module_prefixed(tmp_path, weights):
    bare = tmp_path / "bare.pth"
    torch.save(weights, bare)
    assert _same_params(fastflow.FlowNet2S.from_checkpoint(bare), weights)
    pref = tmp_path / "dp.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in weights.items()}, "epoch": 3}, pref)
    assert _same_params(fastflow.FlowNet2S.from_checkpoint(pref), weights)


def test_reference_loads_the_same_file(tmp_path, weights):
    path = tmp_path / "ck.pth.tar"
    torch.save({"state_dict": weights, "epoch": 0, "best_EPE": 1.0}, path)
    ref = Reference()
    ref.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    assert _same_params(ref, weights)


def _save(tmp_path, obj, name="bad.pth"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_missing_unexpected_misshaped(tmp_path, weights):
    w = dict(weights)
    del w["conv3.0.bias"]
    w["extra.weight"] = torch.zeros(1)
    w["predict_flow2.weight"] = torch.zeros(2, 190, 3, 3)
    with pytest.raises(CheckpointError) as e:
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, w))
    msg = str(e.value)
    assert "conv3.0.bias" in msg and "extra.weight" in msg and "predict_flow2.weight" in msg
    assert "(2, 190, 3, 3)" in msg and "(2, 194, 3, 3)" in msg


def test_foreign_models(tmp_path, weights):
    flownets = dict(weights)
    flownets["conv1.0.weight"] = torch.zeros(64, 12, 7, 7)  # original FlowNetS: 12 input channels
    with pytest.raises(CheckpointError, match="12 input channels"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, flownets))
    flownetc = {"conv_redir.0.weight": torch.zeros(32, 256, 1, 1), "conv1.0.weight": torch.zeros(64, 3, 7, 7)}
    with pytest.raises(CheckpointError, match="FlowNet2-C"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, {"state_dict": flownetc}))
    full = {"flownetc.conv1.0.weight": torch.zeros(1), "flownets_1.conv1.0.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="full FlowNet2"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, full))
    other = {"conv1.weight": torch.zeros(64, 6, 7, 7)}
    with pytest.raises(CheckpointError, match="not flownet2-pytorch"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, other))


def test_bad_files(tmp_path, weights):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        fastflow.FlowNet2S.from_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="directory"):
        fastflow.FlowNet2S.from_checkpoint(tmp_path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        fastflow.FlowNet2S.from_checkpoint(junk)
    good = _save(tmp_path, {"state_dict": weights}, "good.pth")
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="cannot read"):
        fastflow.FlowNet2S.from_checkpoint(trunc)
    with pytest.raises(CheckpointError, match="not a state dict"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, [1, 2, 3]))
    with pytest.raises(CheckpointError, match="empty"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, {}))
    with pytest.raises(CheckpointError, match="not tensors"):
        fastflow.FlowNet2S.from_checkpoint(_save(tmp_path, {"conv1.0.weight": "hello"}))
    assert issubclass(CheckpointError, ValueError)


def test_unreadable_files_are_named_in_fastflow_words(tmp_path, weights):
    """No torch.load advice ("weights_only=False will likely succeed"), no message cut mid-word, and
    the kind of file when it is plainly something else (issue 15, point 9)."""
    import argparse

    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "page.pth.tar").write_text("<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title></html>")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "junk.pth").write_bytes(bytes(range(256)) * 4)
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=1)}, tmp_path / "ns.pth")
    cases = {"img.png": "it is a PNG image", "page.pth.tar": "HTML page", "empty.pth": "empty",
             "junk.pth": "not PyTorch's", "ns.pth": "trusted=True"}
    for name, needle in cases.items():
        with pytest.raises(CheckpointError) as ei:
            fastflow.FlowNet2S.from_checkpoint(tmp_path / name)
        msg = str(ei.value)
        assert needle in msg and name in msg, msg
        assert "weights_only" not in msg and "will likely succeed" not in msg, msg
    # the file with extra Python objects loads when trusted
    m = fastflow.FlowNet2S.from_checkpoint(tmp_path / "ns.pth", trusted=True)
    assert torch.equal(m.conv1[0].weight, weights["conv1.0.weight"])


def test_text_file_and_folder_read_the_same_in_python_and_the_command(tmp_path):
    """A text file given as the checkpoint is named a text file (it was '(10 bytes): 544502645', the
    unpickler's opcode), and a folder is 'a directory' both from Python and from the command
    (the command said 'not found') (issue 20, item 7)."""
    from test_cli import assert_one_line_error, run

    text = tmp_path / "notes.pth"
    text.write_text("hello text\nsecond line")
    with pytest.raises(CheckpointError, match=r"it is a text file \(22 bytes, starting 'hello text'\)"):
        fastflow.FlowNet2S.from_checkpoint(text)
    with pytest.raises(CheckpointError, match="directory, not a file"):
        fastflow.FlowNet2S.from_checkpoint(tmp_path)
    from fastflow.load import load_model

    with pytest.raises(CheckpointError, match="directory, not a file"):
        load_model(tmp_path, "cpu")
    img = tmp_path / "a.png"
    from PIL import Image
    import numpy as np

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    for ck, needle in ((text, "it is a text file"), (tmp_path, "directory, not a file")):
        r = run("flow", img, img, "--checkpoint", ck, "--device", "cpu", "-o", tmp_path / "o.flo")
        assert_one_line_error(r, needle)
