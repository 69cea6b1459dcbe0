"""``fastflow flow IMG1 IMG2``: the flow between two images, as a file and/or a colour picture."""
from __future__ import annotations

from ._common import CLIError, add_model_args, check_output_file, load_model, random_label, read_image, size_note, write_png


def register(sub) -> None:
    f = sub.add_parser("flow", help="flow between two images")
    f.add_argument("img1")
    f.add_argument("img2")
    f.add_argument("-o", "--output", help="flow file to write: .flo (Middlebury) or .png (KITTI 16-bit)")
    f.add_argument("--viz", help="colour-coded flow picture to write (.png)")
    f.add_argument("--max-flow", type=float, default=None, help="fixed colour normalisation (pixels)")
    add_model_args(f)
    f.set_defaults(func=run)


def run(args) -> int:
    from ..api import estimate_flow
    from ..io import write_flow
    from ..viz import flow_to_color

    if not args.output and not args.viz:
        raise CLIError("nothing to write: give -o OUT.flo (or .png for KITTI) and/or --viz OUT.png")
    if args.output and not args.output.lower().endswith((".flo", ".png")):
        raise CLIError(f"{args.output}: unknown flow file extension (use .flo or .png)")
    for path in (args.output, args.viz):  # fail before the network runs
        if path:
            check_output_file(path)
    if args.max_flow is not None and not args.max_flow > 0:
        raise CLIError(f"--max-flow must be positive, got {args.max_flow}")
    img1, img2 = read_image(args.img1), read_image(args.img2)
    if img1.shape[:2] != img2.shape[:2]:
        raise CLIError(f"the images differ in size: {args.img1} is {img1.shape[1]}x{img1.shape[0]}, "
                       f"{args.img2} is {img2.shape[1]}x{img2.shape[0]} (width x height, EXIF orientation applied)")
    model = load_model(args)
    size_note(next(model.parameters()).device, img1.shape[0], img1.shape[1])
    flow = estimate_flow(model, img1, img2)
    if args.output:
        write_flow(args.output, flow)
        print(f"wrote {args.output} ({flow.shape[0]}x{flow.shape[1]}x2 flow, height x width x (u, v)){random_label(args)}")
    if args.viz:
        write_png(args.viz, flow_to_color(flow, max_flow=args.max_flow))
        print(f"wrote {args.viz}{random_label(args)}")
    return 0
