"""Helpers for multi-process launches: which process is the main one, and which rows each process trained on."""

from __future__ import annotations


def is_main_process() -> bool:
    """True in a single-process stage, and in the rank-0 process of a multi-process launch."""
    import os

    return os.environ.get("RANK", "0") == "0"


class ShardRecorder:
    """Digests of the rows this process trained on, so a multi-process launch can show each rank saw its own shard.

    Wraps the Trainer's ``training_step``; a row is identified by its token ids without padding.
    """

    KEYS = (("input_ids", "attention_mask"), ("prompt_ids", "prompt_mask"), ("prompt_input_ids", "prompt_attention_mask"))

    def __init__(self):
        self.rows: set[str] = set()
        self.micro_batches = 0

    def watch(self, trainer) -> None:
        step = trainer.training_step

        def recorded(model, inputs, *args, **kwargs):
            self.record(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = recorded

    def record(self, inputs) -> None:
        import hashlib

        self.micro_batches += 1
        if not isinstance(inputs, dict):
            return
        for ids_key, mask_key in self.KEYS:
            ids = inputs.get(ids_key)
            if ids is None or not hasattr(ids, "dim") or ids.dim() != 2:
                continue
            mask = inputs.get(mask_key)
            for i in range(ids.shape[0]):
                row = ids[i][mask[i].bool()] if mask is not None and mask.shape == ids.shape else ids[i]
                self.rows.add(hashlib.sha1(row.cpu().numpy().tobytes()).hexdigest()[:16])
            return

    def report(self, rank: int) -> dict:
        return {"rank": rank, "micro_batches": self.micro_batches, "distinct_rows": len(self.rows), "rows": sorted(self.rows)}


SHARD = ShardRecorder()
