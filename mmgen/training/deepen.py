"""Change a trained DiT's depth: deepen it without changing what it computes, or shrink it for distillation.

Each new block is a copy of the block before it with its adaLN-Zero modulation and its cross-attention output set
to zero, so it starts as the identity (DiT's own initialisation, sec. 3) and the deeper model's output is exactly
the trained one's. The copies are spread evenly through the stack: growing 6 blocks to 9 inserts one after blocks
1, 3 and 5 (0-based). Shrinking drops the blocks deepening would have inserted (9 to 6: blocks 2, 5 and 8), the
student a distillation starts from (`--distill-depth`): on mmgen-base, trained 3,000 steps after deepening, those
three are the ones whose removal changes its predictions least, of all 84 choices of three.

    deeper = deepen(dit, depth=9)    # (B, C, H, W) outputs equal dit's at every input, then train on
    student = shrink(deeper, depth=6)  # dit's blocks again, as trained since
"""

from __future__ import annotations

from ..models.dit import DiT


def insertion_points(depth: int, new_depth: int) -> list[int]:
    """The blocks (0-based, of the old stack) each new block is inserted after, one entry per new block."""
    added = new_depth - depth
    return [(k + 1) * depth // added - 1 for k in range(added)]


def deepen(dit: DiT, depth: int, source: str = "the DiT") -> DiT:
    """A copy of `dit` with `depth` blocks, the new ones zero-gated copies of their predecessors. `source` names
    `dit` in error messages (the --init-from folder)."""
    old_depth = dit.config.depth
    if depth <= old_depth:
        raise ValueError(
            f"--grow-depth {depth}: {source} already has {old_depth} blocks; ask for more (or leave --grow-depth out "
            "to train it as it is)"
        )
    if depth > 2 * old_depth:
        raise ValueError(f"--grow-depth {depth}: at most twice the {old_depth} blocks of {source} (one copy of each)")
    after = insertion_points(old_depth, depth)
    blocks = []
    for i in range(old_depth):
        blocks.append(_block(dit, i))
        for _ in range(after.count(i)):  # shift, scale and gates of both branches, and the text read, all zero
            copy = _block(dit, i)
            for k in copy:
                if k.startswith(("ada.", "cross.out.")):
                    copy[k].zero_()
            blocks.append(copy)
    return _with_blocks(dit, blocks)


def removal_points(depth: int, new_depth: int) -> list[int]:
    """The blocks (0-based) `shrink` drops from `depth` to `new_depth`: those `deepen` inserts growing `new_depth`
    blocks to `depth`."""
    return [i + k + 1 for k, i in enumerate(insertion_points(new_depth, depth))]


def shrink(dit: DiT, depth: int, source: str = "the DiT") -> DiT:
    """A copy of `dit` with `depth` of its blocks, in order, the ones `removal_points` names dropped."""
    old_depth = dit.config.depth
    if not old_depth / 2 <= depth < old_depth:
        raise ValueError(
            f"--distill-depth {depth}: {source} has {old_depth} blocks; ask for fewer, and at least half of them "
            f"({(old_depth + 1) // 2})"
        )
    drop = removal_points(old_depth, depth)
    return _with_blocks(dit, [_block(dit, i) for i in range(old_depth) if i not in drop])


def _block(dit: DiT, i: int) -> dict:
    """A copy of block `i`'s weights, by the block's own keys."""
    return {k: v.clone() for k, v in dit.blocks[i].state_dict().items()}


def _with_blocks(dit: DiT, blocks: list[dict]) -> DiT:
    """A DiT like `dit` (every weight outside its blocks copied) whose stack is `blocks`, in order."""
    model = DiT.from_config(dit.config, depth=len(blocks))
    state = {k: v.clone() for k, v in dit.state_dict().items() if not k.startswith("blocks.")}
    for j, block in enumerate(blocks):
        state |= {f"blocks.{j}.{k}": v for k, v in block.items()}
    model.load_state_dict(state)
    return model
