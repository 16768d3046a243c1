"""The m-versus-batch rule, in one place (train_step, TrainConfig and the search space use it).

- ``m=None``, or m at least the batch: the whole batch is one micro-batch (plain SAM).
- Otherwise micro-batches of m examples; a batch that m does not divide (an epoch's last batch)
  ends with one smaller micro-batch of the rest, and each micro-batch's final gradient is weighted
  by its number of examples.

A training job that can choose its batch size picks a multiple of m (:func:`batch_for`), so every
micro-batch has m examples.
"""

from __future__ import annotations


def effective_m(m: int | None, batch: int) -> int | None:
    """m as it acts on a batch of ``batch`` examples: None (the whole batch) when m >= batch.

    >>> effective_m(16, 128), effective_m(128, 64), effective_m(None, 64)
    (16, None, None)
    """
    return None if m is None or m >= batch else m


def split(batch: int, m: int | None) -> tuple[int, int, int]:
    """(k, head, rest): k micro-batches of m in the first ``head`` examples, ``rest`` left over.

    >>> split(128, 16), split(37, 16), split(8, 16), split(64, None)
    ((8, 128, 0), (2, 32, 5), (1, 8, 0), (1, 64, 0))
    """
    m = effective_m(m, batch) or batch
    head = batch - batch % m
    return head // m, head, batch - head


def batch_for(batch: int, m: int | None) -> int:
    """The largest batch size <= ``batch`` that m divides (``batch`` itself when m >= batch).

    >>> batch_for(100, 16), batch_for(8, 16), batch_for(64, None)
    (96, 8, 64)
    """
    m = effective_m(m, batch)
    return batch if m is None else batch - batch % m
