"""``fastflow validate --dataset NAME --root DIR``: end-point error on a flow benchmark's training set."""
from __future__ import annotations

import json

from ..datasets import DATASETS
from ._common import CLIError, add_model_args, ensure_parent, load_model, model_label


def register(sub) -> None:
    parser = sub.add_parser("validate", help="end-point error on Sintel, KITTI, FlyingChairs or Middlebury")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--root", required=True, help="the dataset's folder (see the README for each layout)")
    add_model_args(parser)
    parser.add_argument("--compare-precisions", action="store_true",
                        help="one pass in every precision the device supports: EPE against the ground truth "
                             "and against the fp32 flow (--precision is then ignored)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs (sorted order)")
    parser.add_argument("--split", choices=["val", "train", "all"], default=None,
                        help="FlyingChairs split (default: val when FlyingChairs_train_val.txt is found)")
    parser.add_argument("--crop", action="store_true",
                        help="evaluate as flownet2-pytorch does: centre-crop frames and ground truth to the largest "
                             "multiples of 64 (Sintel: 384x1024) instead of resizing the full frames")
    parser.add_argument("--json", help="also write every number (per pair too) as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..datasets import DatasetError, load_dataset
    from ..validation import format_report, json_safe, validate

    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be at least 1, got {args.limit}")
    if args.json:
        ensure_parent(args.json)
    try:
        dataset = load_dataset(args.dataset, args.root, limit=args.limit, split=args.split)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    label = model_label(args)
    model = load_model(args)
    device = next(model.parameters()).device
    try:
        res = validate(model, dataset, precision=args.precision, compare_precisions=args.compare_precisions,
                       crop=args.crop, progress=not args.quiet)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    res["model"] = label
    if args.precision == "tf32" and device.type == "cpu" and not args.compare_precisions:
        res["notes"].append("no TF32 on a CPU: ran fp32")
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_safe(res), f, indent=1, allow_nan=False)
        print(f"wrote {args.json}")
    return 0
