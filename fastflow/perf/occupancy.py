"""Resident blocks and warps per multiprocessor of a kernel, from its registers per thread, shared
memory per block and threads per block, with the occupancy rules of sm_80 (A100) and sm_90
(H100/H200). Sources: NVIDIA's CUDA C++ Programming Guide, "Technical Specifications per Compute
Capability" (registers per SM, max warps, blocks and shared memory per SM and per block) and the
CUDA Occupancy Calculator's allocation rules (registers allocated per warp in units of 256,
shared memory in units of 128 bytes, 1 KB of shared memory reserved per resident block).
"""
from __future__ import annotations

from typing import Dict, NamedTuple

__all__ = ["ArchLimits", "ARCHS", "Occupancy", "occupancy"]


class ArchLimits(NamedTuple):
    name: str
    sms: int               # multiprocessors of the part named (H100/H200 SXM: 132; A100: 108)
    regs_per_sm: int
    max_regs_per_thread: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    smem_per_sm: int       # bytes usable by blocks (the configurable carve-out at its maximum)
    smem_per_block: int    # bytes one block may opt into
    smem_reserved_per_block: int
    reg_unit: int          # registers are allocated per warp in units of this many
    smem_unit: int


ARCHS: Dict[str, ArchLimits] = {
    "sm_90": ArchLimits("H100/H200 (sm_90)", 132, 65536, 255, 64, 32, 228 * 1024, 227 * 1024, 1024, 256, 128),
    "sm_80": ArchLimits("A100 (sm_80)", 108, 65536, 255, 64, 32, 164 * 1024, 163 * 1024, 1024, 256, 128),
}


class Occupancy(NamedTuple):
    blocks_per_sm: int
    warps_per_sm: int
    occupancy: float        # resident warps / max warps
    limited_by: str         # "registers", "shared memory", "warps" or "blocks"


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(arch: str, threads: int, regs_per_thread: int, smem_bytes: int) -> Occupancy:
    """Resident blocks of a kernel with ``threads`` per block, ``regs_per_thread`` and
    ``smem_bytes`` (static + dynamic) per block on ``arch`` ("sm_90" or "sm_80")."""
    a = ARCHS[arch]
    if smem_bytes > a.smem_per_block:
        return Occupancy(0, 0, 0.0, "shared memory")
    warps = -(-threads // 32)
    regs_per_warp = _round_up(max(regs_per_thread, 1) * 32, a.reg_unit)
    limits = {
        "registers": a.regs_per_sm // (regs_per_warp * warps),
        "shared memory": (a.smem_per_sm // (_round_up(smem_bytes, a.smem_unit) + a.smem_reserved_per_block)
                          if smem_bytes else a.max_blocks_per_sm + 1),  # no shared memory: never the limit
        "warps": a.max_warps_per_sm // warps,
        "blocks": a.max_blocks_per_sm,
    }
    by = min(limits, key=lambda k: (limits[k], list(limits).index(k)))
    blocks = limits[by]
    return Occupancy(blocks, blocks * warps, blocks * warps / a.max_warps_per_sm, by)
