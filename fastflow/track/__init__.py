"""Point, box, mask and pose tracking along the flow (``fastflow track``)."""
from ..tracking import track_points
from .associate import COCO_SIGMAS, Detection, Track, Tracker, assign, iou_matrix, oks_matrix, track_detections
from .propagate import (FB_ALPHA, FB_BETA, BoxState, FlowSource, PropagateFrame, dis_flow, fb_check, flow_source,
                        flow_stream, propagate, propagate_box, propagate_mask)
