"""warp: bilinear backward warp of images by a flow, border (Resample2d) or zeros padding
(csrc/ops/warp/; reference: :func:`fastflow.reference.warp`; docs/design.md section 6)."""
from __future__ import annotations

from typing import Tuple, Union

import torch

from .launch import DTYPE_CODES, check_float, check_tensor, device_args, empty, kernels, same_device, simt_on


@torch.library.custom_op("fastflow::warp", mutates_args=())
def warp_op(x: torch.Tensor, flow: torch.Tensor, zeros: bool, with_mask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    out = torch.empty_like(x)  # preserves channels_last
    mask = empty(*((b, 1, h, w) if with_mask else (0,)), dtype=x.dtype, like=x)
    if simt_on(x):
        out.fill_(float("nan"))
    device, stream = device_args(x)
    with kernels("warp", x, {"x": x, "flow": flow}, {"out": out, "mask": mask if with_mask else None}) as lib:
        params = lib.WarpParams(
            x=x.data_ptr(), x_dtype=DTYPE_CODES[x.dtype], x_stride=list(x.stride()), flow=flow.data_ptr(),
            flow_dtype=DTYPE_CODES[flow.dtype], flow_stride=list(flow.stride()), batch=b, channels=c, height=h,
            width=w, out=out.data_ptr(), out_stride=list(out.stride()), mask=mask.data_ptr() if with_mask else 0,
            zeros=zeros,
        )
        lib.warp(params, device, stream)
    return out, mask


@warp_op.register_fake
def _(x, flow, zeros, with_mask):
    b, c, h, w = x.shape
    return torch.empty_like(x), x.new_empty((b, 1, h, w) if with_mask else (0,))


def warp(x, flow, padding: str = "border", return_mask: bool = False):
    """Backward bilinear warp: ``out[i, j] = x[i + v, j + u]`` with ``(u, v) = flow[i, j]`` in pixels.

    Takes what ``fastflow.estimate_flow`` takes and returns: numpy arrays or tensors, flow
    ``(H, W, 2)`` / ``(2, H, W)`` or batched ``(B, H, W, 2)`` / ``(B, 2, H, W)`` (a last dimension
    of 2 means channels-last), and ``x`` with the same height and width in ``(H, W, C)``, ``(C, H, W)``,
    ``(H, W)``, or batched ``(B, H, W, C)`` / ``(B, C, H, W)`` (any C; when both layouts fit, tensors
    are read channels-first, PyTorch's convention, and numpy arrays channels-last, and x follows the
    flow's layout). An unbatched flow applies to every image of a batch and vice versa.

    Returns ``x`` warped, of ``x``'s kind (numpy, or tensor on ``x``'s device), layout and dtype:
    float16/bfloat16/float32 compute in their own precision, float64 in float32, and integer images
    (uint8, uint16, ...) are computed in float32 and rounded back, clamped to the dtype's range.
    A numpy argument joins the other's device. ``padding="border"`` is flownet2-pytorch's Resample2d
    (edge taps clamped); ``"zeros"`` reads 0 outside the image and with ``return_mask=True`` also
    returns a mask in ``x``'s layout with one channel (1 where the sample is inside the image, else
    0; ``x``'s dtype). Non-finite flow gives NaN ("border") or 0 with mask 0 ("zeros"). No autograd
    history. Float ``(B, C, H, W)`` / ``(C, H, W)`` tensors take the op directly (``warp_nchw``).
    """
    if (isinstance(x, torch.Tensor) and isinstance(flow, torch.Tensor) and x.dtype in DTYPE_CODES
            and flow.dtype in DTYPE_CODES and x.dim() == flow.dim() and x.dim() in (3, 4)
            and flow.shape[-3] == 2 and x.shape[-2:] == flow.shape[-2:]
            and (x.dim() == 3 or x.shape[0] == flow.shape[0])):
        return warp_nchw(x, flow, padding, return_mask)
    return _warp_any_layout(x, flow, padding, return_mask)


def _warp_any_layout(x, flow, padding: str, return_mask: bool):
    import numpy as np

    op = "warp"
    for name, t in (("x", x), ("flow", flow)):
        if not isinstance(t, (np.ndarray, torch.Tensor)):
            raise TypeError(f"fastflow.{op}: {name} must be a numpy array or a torch.Tensor, got {type(t).__name__}")
    xs, fs = tuple(x.shape), tuple(flow.shape)
    if len(fs) not in (3, 4) or 2 not in (fs[-1], fs[-3]):
        raise ValueError(f"fastflow.{op}: flow must be (H, W, 2), (2, H, W), (B, H, W, 2) or (B, 2, H, W), got shape {fs}")
    # A last dimension of 2 means channels-last, unless only the channels-first reading fits x. When
    # both fit, a tensor flow is read channels-first (PyTorch's convention) and a numpy flow
    # channels-last (what estimate_flow returns for numpy images).
    flow_last = fs[-1] == 2
    if flow_last and fs[-3] == 2:
        def fits(hw):
            return xs == hw or (len(xs) in (3, 4) and hw in (xs[-3:-1], xs[-2:]))
        fits_l, fits_f = fits(fs[-3:-1]), fits(fs[-2:])
        flow_last = not fits_f or (fits_l and not isinstance(flow, torch.Tensor))
    hw = fs[-3:-1] if flow_last else fs[-2:]
    fits_last = len(xs) in (3, 4) and xs[-3:-1] == hw
    fits_first = len(xs) in (3, 4) and xs[-2:] == hw
    if len(xs) == 2 and xs == hw:
        x_layout = "hw"
    elif fits_last and (flow_last or not fits_first):
        x_layout = "last"
    elif fits_first:
        x_layout = "first"
    else:
        raise ValueError(
            f"fastflow.{op}: x of shape {xs} does not match flow of shape {fs}: need x as (H, W, C), (C, H, W), "
            f"(H, W) or a batch of those with H, W = {hw[0]}, {hw[1]}"
        )
    x_batched, flow_batched = len(xs) == 4, len(fs) == 4
    if x_batched and flow_batched and xs[0] != fs[0]:
        raise ValueError(f"fastflow.{op}: x's batch of {xs[0]} does not match flow's batch of {fs[0]} (shapes {xs} and {fs})")

    x_numpy = isinstance(x, np.ndarray)
    device = x.device if not x_numpy else (flow.device if isinstance(flow, torch.Tensor) else torch.device("cpu"))

    def as_tensor(a, name):
        if isinstance(a, np.ndarray):
            if a.dtype.kind not in "fiu":
                raise ValueError(f"fastflow.{op}: {name} has unsupported dtype {a.dtype}")
            a = torch.from_numpy(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")))
            return a.to(device)
        if a.dtype == torch.bool or a.is_complex():
            raise ValueError(f"fastflow.{op}: {name} has unsupported dtype {a.dtype}")
        if a.device != device:
            raise ValueError(f"fastflow.{op}: x and flow must be on the same device, got {device} and {a.device}")
        return a.detach()

    xt, ft = as_tensor(x, "x"), as_tensor(flow, "flow")
    out_dtype = xt.dtype
    if xt.dtype not in DTYPE_CODES:
        xt = xt.float()
    if ft.dtype not in DTYPE_CODES:
        ft = ft.float()
    if x_layout == "hw":
        xt = xt.unsqueeze(0)
    elif x_layout == "last":
        xt = xt.movedim(-1, -3)
    if flow_last:
        ft = ft.movedim(-1, -3)
    if not x_batched:
        xt = xt.unsqueeze(0)
    if not flow_batched:
        ft = ft.unsqueeze(0)
    b = max(xt.shape[0], ft.shape[0])
    xt, ft = xt.expand(b, *xt.shape[1:]), ft.expand(b, *ft.shape[1:])
    res = warp_nchw(xt, ft, padding, return_mask)
    outs = list(res) if return_mask else [res]

    def back(t):
        if out_dtype != t.dtype:
            if not out_dtype.is_floating_point:
                info = torch.iinfo(out_dtype)
                t = t.float().round_().clamp_(info.min, info.max)
            t = t.to(out_dtype)
        if not (x_batched or flow_batched):
            t = t[0]
        if x_layout == "hw":
            t = t[..., 0, :, :]
        elif x_layout == "last":
            t = t.movedim(-3, -1)
        t = t.contiguous()
        return t.cpu().numpy() if x_numpy else t

    outs = [back(t) for t in outs]
    return tuple(outs) if return_mask else outs[0]


def warp_nchw(
    x: torch.Tensor, flow: torch.Tensor, padding: str = "border", return_mask: bool = False
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """The warp op on tensors: ``out[b, :, i, j] = x[b, :, i + v, j + u]``, ``(u, v) = flow[b, :, i, j]``.

    x: ``(B, C, H, W)`` or ``(C, H, W)``, float32/float16/bfloat16, NCHW or channels_last (kept).
    flow: ``(B, 2, H, W)`` or ``(2, H, W)`` in pixels, on the same device. ``padding="border"`` is
    flownet2-pytorch's Resample2d (edge taps clamped); ``"zeros"`` reads 0 outside the image and
    with ``return_mask=True`` also returns a ``(B, 1, H, W)`` mask: 1 where the sample position is
    inside the image, else 0. Non-finite flow gives NaN ("border") or 0 with mask 0 ("zeros").
    The result carries no autograd history.
    """
    op = "warp"
    check_tensor("x", op, x)
    check_tensor("flow", op, flow)
    if padding not in ("border", "zeros"):
        raise ValueError(f"fastflow.{op}: padding must be 'border' or 'zeros', got {padding!r}")
    if return_mask and padding != "zeros":
        raise ValueError(f"fastflow.{op}: return_mask=True needs padding='zeros'")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
        if flow.dim() == 3:
            flow = flow.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"fastflow.{op}: flow must be (B, 2, H, W), got shape {tuple(flow.shape)}")
    b, _, h, w = x.shape
    if flow.shape[0] != b or flow.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"fastflow.{op}: flow {tuple(flow.shape)} does not match x {tuple(x.shape)} (need the same B, H, W)"
        )
    check_float("x", op, x)
    check_float("flow", op, flow)
    same_device(op, x=x, flow=flow)
    out, mask = warp_op(x, flow, padding == "zeros", bool(return_mask))
    if squeeze:
        out = out.squeeze(0)
        mask = mask.squeeze(0) if return_mask else mask
    return (out, mask) if return_mask else out
