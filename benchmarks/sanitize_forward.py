"""A small fused forward (and each op once) for compute-sanitizer: memcheck, racecheck, initcheck,
synccheck. Eager kernels (no graph) first, so a report names the kernel; then one graph replay."""
import sys

import torch

import fastflow
from fastflow import ops


def main() -> int:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    pair = torch.rand(1, 3, 2, 128, 192, device=dev) * 255
    x = torch.randn(2, 3, 33, 47, device=dev)
    flow = torch.randn(2, 2, 33, 47, device=dev) * 5
    ops.warp(x, flow, "zeros", return_mask=True)
    ops.warp(x.half().contiguous(memory_format=torch.channels_last), flow, "border")
    ops.upsample_flow(torch.randn(1, 2, 9, 13, device=dev))
    for dtype in (torch.float16, torch.float32):
        model = fastflow.FlowNet2S().to(dev).eval().to(dtype)
        model.use_cuda_graph = False
        with torch.no_grad():
            model(pair)
            model.use_cuda_graph = True
            model(pair)
    torch.cuda.synchronize()
    print("sanitize_forward: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
