"""``fastflow info``: how fastflow was built and which GPUs it sees; or what a checkpoint file holds."""
from __future__ import annotations

import json



def register(sub) -> None:
    i = sub.add_parser("info", help="how fastflow was built and which GPUs it sees; or what a checkpoint holds")
    i.add_argument("--json", action="store_true")
    i.add_argument("--checkpoint", help="check a downloaded checkpoint file: size, sha256, tensors, parameters, "
                                        "and whether it is FlowNet2-S")
    i.set_defaults(func=run)


def run(args) -> int:
    import torch

    from .._backend import build_info
    from ..checkpoint import describe_checkpoint
    from ..load import find_checkpoint
    from ..model import cpu_forward_description

    if args.checkpoint:
        ck = describe_checkpoint(find_checkpoint(args.checkpoint))
        if args.json:
            print(json.dumps(ck, indent=1))
        else:
            print(f"{ck['path']}: {ck['bytes']:,} bytes, sha256 {ck['sha256']}")
            print(f"  {ck['tensors']} tensors, {ck['parameters']:,} parameters, {'/'.join(ck['dtypes'])}")
            print(f"  {ck['model']}")
        return 0
    info = build_info()
    # The CPU versions of the conv/deconv ops are host emulations of the CUDA kernels for tests;
    # the model's CPU forward does not use them.
    info["cpu_ops"] = [o.replace("(emulation)", "(CUDA kernel emulated for tests)") for o in info.get("cpu_ops", [])]
    info["cpu_forward"] = cpu_forward_description()
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:>22}: {v}")
    return 0
