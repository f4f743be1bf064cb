"""The every-step buffer of ``aitrace.torch.watch``: each parameter's gradient norm, and the step's loss.

Each step's norms are written into a row of a buffer allocated once on the parameters' device and
read back in one copy: no tensor is held per step (thousands of small tensors alive, and the Python
objects around them, cost the training loop more than the norms themselves). Column ``j`` holds
parameter ``j``'s norm (its square on the CPU's numpy path, rooted at :meth:`NormRows.take`; 0 where it
has no gradient that step); the last column holds the loss handed over for that step.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

_NUMPY_DTYPES = frozenset({torch.float32, torch.float64})
_grad = operator.attrgetter("grad")
_numpy = torch.Tensor.numpy


class NormRows:
    """Rows of gradient norms on the parameters' device, queued until :meth:`take`.

    ``write(loss)`` fills the next row (no host sync); ``take()`` returns the queued rows as one
    flat device tensor of ``n * (width + 1)`` values, with the rows whose parameters were not all
    present and the rows that hold a loss, and starts over.
    """

    def __init__(self, params: Sequence[torch.Tensor], rows_per_chunk: int) -> None:
        self.params = list(params)
        self.width = len(params)
        self._rows_per_chunk = max(1, min(rows_per_chunk, 256))
        one_device = len({p.device for p in params}) <= 1
        # Norms of half-precision tensors are taken in float32 (a float16 norm overflows at 65504).
        dtypes = {p.dtype for p in params}
        low = {torch.float16, torch.bfloat16}
        self.norm_dtype = torch.float32 if dtypes & low and dtypes <= low | {torch.float32} else None
        same = dtypes <= {torch.float32} or self.norm_dtype is not None or dtypes == {torch.float64}
        self._dtype = torch.float32 if same and torch.float64 not in dtypes else torch.float64
        self._stack_into_row = one_device and same  # else the row takes a copy (device, dtype)
        self.device = params[0].device if params else torch.device("cpu")
        # On the CPU, float32/float64 gradients are read through numpy: one BLAS dot per gradient, its
        # square norm written straight into the step's row (a numpy view of it), the roots taken at take().
        # Inside bench_torch_watch's training step that is about 40% less time than vector_norm(out=) per
        # gradient (its kernel is slower than the BLAS dot, and each call costs more around it).
        self.squares = bool(params) and one_device and self.device.type == "cpu" and dtypes <= _NUMPY_DTYPES
        self._chunks: list[torch.Tensor] = []
        self._capacity = 0  # rows in the chunks
        # Views of each row's norms and of its loss cell, made when a row first needs them (the numpy path
        # without a loss never does) and kept for the chunks' life: made up front, 256 at each chunk, they
        # cost ~2 us a step over a watch's first 1000 steps (and kept two tensors a row alive for the GC).
        self._rows: dict[int, torch.Tensor] = {}
        self._loss_cells: dict[int, torch.Tensor] = {}
        # The squares path keeps each step's dots as the list np.vdot's map made (None where the step
        # took the general path and wrote its row): written into the rows at take(), one numpy
        # conversion for all of them. Assigning the list into a numpy row per step cost ~3 us of a
        # ~1 ms step, the conversion at take() costs ~0.5 us a step (the lists are cold by then).
        self._square_lists: list[list[float] | None] = []
        self.n = 0  # rows queued
        self._ragged: dict[int, list[int]] = {}  # row -> the parameters with a gradient, when not all
        self._with_loss: set[int] = set()
        self.sparse = False  # a sparse gradient was seen: norms of its values, one call per step

    def write(self, loss: torch.Tensor | None) -> int:
        """Queue this step's norms (and ``loss``) in the next row; return the row's index."""
        n = self.n
        if n == self._capacity:
            self._grow()
        if loss is not None:
            self._views(n)
            self._loss_cells[n].copy_(loss)
            self._with_loss.add(n)
        if self.squares:
            try:  # None.numpy(), a sparse or a requires-grad gradient raise: those steps take the general path
                grads = list(map(_numpy, map(_grad, self.params)))  # map() over C functions: no loop body
                self._square_lists.append(list(map(np.vdot, grads, grads)))
            except (AttributeError, TypeError, RuntimeError):
                self._torch_norms(n)
                self._square_lists.append(None)  # after it: a failed step appends nothing, as it queues no row
        else:
            self._torch_norms(n)
        self.n = n + 1
        return n

    def _torch_norms(self, n: int) -> None:
        """Row ``n`` by torch's norms: off the numpy path, or a step it cannot take. No graph is recorded,
        even for gradients made with ``create_graph=True`` (the numpy path needs no such switch)."""
        grad_mode = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            if self.squares:
                self._ragged_step(n)
            else:
                self._step_norms(n, self._views(n))
        except NotImplementedError:  # a sparse gradient (an nn.Embedding(sparse=True)): no fused norm
            if not any(p.grad is not None and p.grad.is_sparse for p in self.params):
                raise
            self.sparse = True
            self._ragged_step(n)
        finally:
            torch._C._set_grad_enabled(grad_mode)

    def take(self) -> tuple[int, torch.Tensor, dict[int, list[int]], set[int]]:
        """``(rows, flat device tensor of rows x (width + 1), ragged rows, rows with a loss)``; starts over."""
        n, ragged, with_loss, lists = self.n, self._ragged, self._with_loss, self._square_lists
        self.n, self._ragged, self._with_loss, self._square_lists = 0, {}, set(), []
        if not n:
            return n, torch.zeros(0), ragged, with_loss
        used = self._chunks[: (n + self._rows_per_chunk - 1) // self._rows_per_chunk]
        table = torch.cat(used)[:n] if len(used) > 1 else used[0][:n].clone()
        if self.squares:
            # The row's own dtype named: numpy finding it alone takes 4 times as long (0.6 ms for 1000 rows).
            dtype = np.float32 if table.dtype == torch.float32 else np.float64
            listed = [i for i, row in enumerate(lists) if row is not None]
            if len(listed) == n:  # the common case: a slice (indexing by a list of rows costs ~1 us a row)
                table[:, : self.width] = torch.from_numpy(np.array(lists, dtype=dtype))
            elif listed:
                squares = np.array([lists[i] for i in listed], dtype=dtype)
                table[torch.tensor(listed), : self.width] = torch.from_numpy(squares)
            table[:, : self.width].sqrt_()
        return n, table.reshape(-1), ragged, with_loss

    def _ragged_step(self, n: int) -> None:
        present = self._ragged_norms(self._views(n))
        if len(present) < self.width:
            self._ragged[n] = present

    def _step_norms(self, n: int, row: torch.Tensor) -> None:
        """Off the CPU, or for other dtypes: one ``_foreach_norm`` (a fused kernel on a GPU) into the row."""
        if self.sparse:
            self._ragged_step(n)
        elif self.params:
            grads = [p.grad for p in self.params]
            try:
                norms = torch._foreach_norm(cast(list[torch.Tensor], grads), 2, self.norm_dtype)
            except TypeError:  # a parameter without a gradient this step (cheaper than looking for None first)
                self._ragged_step(n)
            else:
                if self._stack_into_row:
                    torch.stack(norms, out=row)
                else:
                    row.copy_(stack(norms))

    def _ragged_norms(self, row: torch.Tensor) -> list[int]:
        """Some parameters have no gradient this step: their columns hold 0; return those that have one."""
        grads = [p.grad for p in self.params]
        present = [i for i, g in enumerate(grads) if g is not None]
        row.zero_()
        if present:
            values = [_values(g) for g in grads if g is not None]
            norms = stack(torch._foreach_norm(values, 2, self.norm_dtype)).to(row.device, row.dtype)
            row.index_copy_(0, torch.tensor(present, device=row.device), norms.square() if self.squares else norms)
        return present

    def _grow(self) -> None:
        self._chunks.append(torch.zeros(self._rows_per_chunk, self.width + 1, dtype=self._dtype, device=self.device))
        self._capacity += self._rows_per_chunk

    def _views(self, n: int) -> torch.Tensor:
        """Row ``n``'s norms (a view; the view of its loss cell made with it)."""
        row = self._rows.get(n)
        if row is None:
            whole = self._chunks[n // self._rows_per_chunk][n % self._rows_per_chunk]
            row = self._rows[n] = whole[: self.width]
            self._loss_cells[n] = whole[self.width]
        return row


def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of tensors that may sit on several devices (onto the first one's)."""
    device = tensors[0].device
    if any(t.device != device for t in tensors):
        tensors = [t.to(device) for t in tensors]
    return torch.stack(list(tensors))


def _values(grad: torch.Tensor) -> torch.Tensor:
    """What a gradient's norm is taken over: a sparse one's (summed) values, a dense one itself."""
    return grad.coalesce().values() if grad.is_sparse else grad
