"""CUDA's limit on a launch grid's y and z extents, and the launch groups that stay under it.

Kernels that give each (sequence, head) pair or batch row a program on axis y or z cannot launch
more than 65535 of them at once; the ops split such calls into groups of whole items, one launch
(or op call) each. Each module keeps its own patchable cap (tests lower it to split on the CPU)
and passes it here."""
from __future__ import annotations

MAX_GRID_YZ = 65535


def grid_groups(count: int, programs_per_item: int = 1, cap: int = MAX_GRID_YZ,
                what: str = "H") -> list[tuple[int, int]]:
    """[start, stop) groups of ``count`` items, at most ``cap`` programs a launch when each item
    takes ``programs_per_item`` of them (its heads, say) on the axis. Raises when one item alone
    is past the cap (``what`` names that count in the message)."""
    per_group = cap // max(programs_per_item, 1)
    if per_group == 0:
        raise ValueError(f"{what} must be <= {cap} (CUDA's limit on grid axes y and z); got {what}={programs_per_item}")
    return [(start, min(start + per_group, count)) for start in range(0, count, per_group)]
