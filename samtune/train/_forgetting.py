"""Example forgetting across presentations (Toneva et al., 2019)."""

from __future__ import annotations

import operator

import torch


class ForgettingTracker:
    """Counts forgetting events: an example correct at one presentation and wrong at its next.

    Feed it, every training step, the dataset indices of the batch's examples and whether
    the clean forward pass (at the weights before the update) classified each correctly
    (:meth:`update`), or several consecutive steps at once (:meth:`update_steps`, which
    counts exactly what the same steps given one by one would). The first presentation of
    an example never counts as an event, and wrong -> correct ("learning") is not an event.

    State lives on the device of the first update (no host sync per step); reading
    :meth:`epoch_rate` or :attr:`total_events` syncs once. An index repeated inside one
    batch is compared with its previous batch only, and its last value in the batch is kept.
    Indices out of ``[0, n_examples)`` raise ``IndexError`` on CPU; on a GPU they trip a
    device-side assertion.
    """

    def __init__(self, n_examples: int) -> None:
        """Track ``n_examples`` examples, indexed ``0 .. n_examples - 1``."""
        n = -1 if isinstance(n_examples, bool) else operator.index(n_examples)
        if n < 0:
            raise ValueError(f"n_examples must be a non-negative integer, got {n_examples!r}")
        self.n_examples = n
        # Per example: -1 never presented, 0 wrong at its last presentation, 1 correct.
        self._last = torch.full((n,), -1, dtype=torch.int8)
        # Per example: forgetting events over the whole run.
        self._per_example = torch.zeros(n, dtype=torch.int32)
        # [events this epoch, presentations this epoch that had a previous one, events in total]
        self._counts = torch.zeros(3, dtype=torch.int64)

    def _to(self, device: torch.device) -> None:
        """Move the state to ``device`` (a no-op when it is already there)."""
        if self._last.device != device:
            self._last = self._last.to(device)
            self._per_example = self._per_example.to(device)
            self._counts = self._counts.to(device)

    def update(self, indices: torch.Tensor, correct: torch.Tensor) -> None:
        """Record one presentation of each example in ``indices`` with its ``correct`` flag.

        ``indices`` are int64 dataset indices, ``correct`` a bool (or 0/1) tensor of the same
        length. Both may live on any device; the state follows ``correct``'s device.
        """
        if indices.ndim != 1 or correct.shape != indices.shape:
            raise ValueError(
                "indices and correct must be 1-D tensors of the same length, got shapes "
                f"{tuple(indices.shape)} and {tuple(correct.shape)}"
            )
        self.update_steps(indices.unsqueeze(0), correct.unsqueeze(0))

    def update_steps(self, indices: torch.Tensor, correct: torch.Tensor) -> None:
        """Record ``S`` consecutive steps at once: row ``s`` of the ``(S, N)`` ``indices`` and
        ``correct`` is step ``s``. Counts exactly what ``S`` calls of :meth:`update` would,
        also when an example comes back within the ``S`` steps, in a fixed number of tensor
        operations whatever ``S`` is.
        """
        if indices.ndim != 2 or correct.shape != indices.shape:
            raise ValueError(
                "indices and correct must be (steps, batch) tensors of the same shape, got "
                f"shapes {tuple(indices.shape)} and {tuple(correct.shape)}"
            )
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        device = correct.device
        self._to(device)
        if indices.numel() == 0:
            return
        batch = indices.shape[1]
        idx = indices.detach().to(device=device, dtype=torch.int64, non_blocking=True).reshape(-1)
        if device.type == "cpu":
            lo, hi = torch.aminmax(idx)
            lo, hi = int(lo), int(hi)
            if lo < 0 or hi >= self.n_examples:
                raise IndexError(
                    f"example index out of range [0, {self.n_examples}): min {lo}, max {hi}"
                )
        # Group the presentations by example; the stable sort keeps each example's in step
        # order (the flattened tensor is step-major), so within a group they are in time order.
        key, order = torch.sort(idx, stable=True)
        step = torch.div(order, batch, rounding_mode="floor")
        cur = correct.detach().reshape(-1).bool()[order]
        pos = torch.arange(key.numel(), device=device)
        # A run: one example's presentations within one step (longer than one only for an
        # index repeated inside a batch, which compares with its previous batch).
        new_run = torch.ones_like(cur)
        new_run[1:] = (key[1:] != key[:-1]) | (step[1:] != step[:-1])
        run_start = torch.where(new_run, pos, 0).cummax(0).values
        before = (run_start - 1).clamp_min(0)
        # The previous presentation: the last one of the example's previous run in these
        # steps when there is one, else the state left by earlier updates.
        in_steps = (run_start > 0) & (key[before] == key)
        prev = torch.where(in_steps, cur[before].to(torch.int8), self._last[key])
        events = (prev == 1) & ~cur
        n_events = events.sum()
        self._counts += torch.stack([n_events, (prev >= 0).sum(), n_events])
        self._per_example.index_add_(0, key, events.to(torch.int32))
        # Keep each example's last presentation: the last of its group.
        last = torch.ones_like(cur)
        last[:-1] = key[1:] != key[:-1]
        self._last[key[last]] = cur[last].to(torch.int8)

    def epoch_rate(self) -> float:
        """Forgetting events this epoch / presentations this epoch that had a previous one.

        Returns 0.0 when no presentation this epoch had a previous one (e.g. the first epoch).
        """
        events, comparable, _ = self._counts.tolist()
        return events / comparable if comparable else 0.0

    def end_epoch(self) -> None:
        """Reset the epoch counters; keep each example's last correctness and the totals."""
        self._counts[:2] = 0

    @property
    def total_events(self) -> int:
        """Forgetting events over the whole run."""
        return int(self._counts[2].item())

    def forgetting_counts(self) -> torch.Tensor:
        """Per-example number of forgetting events so far (int64, on CPU, a copy)."""
        return self._per_example.to("cpu", dtype=torch.int64, copy=True)

    def presented(self) -> torch.Tensor:
        """Per-example bool mask (CPU): whether the example has been presented at least once."""
        return (self._last >= 0).cpu()
