"""What the routes read from, and how a route gets it: ``svc: Svc`` in its signature.

:func:`fleetscope.api.app.create_app` keeps the :class:`Services` on
``app.state``; the routes are module-level routers (as Starlette composes
them), not closures over the services, so each one is a plain function that can
be read alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import Depends, Request

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api import imported, queries, scope
from fleetscope.api.auth import AuthConfig, Authenticator
from fleetscope.api.control import ControlPlane
from fleetscope.model.access import Caller
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.types import Type
from fleetscope.store.block import Block, from_points
from fleetscope.store.history import History


class Services:
    """What the API reads from: the control plane, the real-time window and the history; and
    who may read it (``auth``: tokens required unless built with ``AuthConfig(enabled=False)``).

    Instrumentations are read through :meth:`get`, :meth:`used` and :meth:`listed`, which
    apply the caller's tenant scope (:mod:`fleetscope.api.scope`)."""

    def __init__(self, control: ControlPlane, aggregator: Aggregator, history: History | None = None,
                 auth: Authenticator | None = None) -> None:
        self.control = control
        self.aggregator = aggregator
        self.history = history
        self.auth = auth if auth is not None else Authenticator(control.store, AuthConfig())

    def get(self, caller: Caller, inst_id: int) -> Instrumentation:
        """The instrumentation ``inst_id`` if ``caller`` may see it; 404 otherwise."""
        return scope.get(self.control.store, caller, inst_id)

    def listed(self, caller: Caller) -> list[Instrumentation]:
        """Every instrumentation ``caller`` may see."""
        return scope.listed(caller, self.control.list())

    def used(self, caller: Caller, inst_id: int) -> Instrumentation:
        """:meth:`get`, marked as read (so ``idle_max`` does not expire it)."""
        inst = self.get(caller, inst_id)
        self.control.touch(inst_id)
        return inst

    def distribution(self, caller: Caller, inst_id: int) -> Instrumentation:
        """:meth:`used`, and a 409 unless it has a numeric decomposition."""
        inst = self.used(caller, inst_id)
        queries.require_distribution(inst)
        return inst

    def points(self, inst: Instrumentation, rng: queries.Range) -> list[DataPoint]:
        """The data points of ``rng`` (window, history and imported logs; gaps have value None)."""
        points = queries.data_points(inst, self.aggregator.window(inst.id), rng, self.aggregator.topk,
                                     self.history)
        topk = inst.keys_kept(self.aggregator.topk)
        return imported.with_imported(points, imported.imported_points(self.control.store, inst, rng, topk),
                                      inst.shape, topk)

    def earlier_points(self, inst: Instrumentation, rng: queries.Range, back: int) -> list[DataPoint]:
        """The points of ``rng`` ``back`` seconds earlier, step for step (as many, as long: the
        same work as ``rng``'s own), read as :meth:`points` reads them. A PNG's ``compare``."""
        if back > rng.start:
            raise InputError("compare", f"reaches before 1970: the range starts {rng.start} s after it")
        try:
            past = queries.resolve_range(inst, None, start_time=rng.start - back, duration=rng.duration,
                                         ndatapoints=rng.n, tiers=self.tiers(inst))
        except InputError as e:
            raise InputError("compare", f"the range {back} s earlier: {e.message}") from None
        return self.points(inst, past)

    def block(self, inst: Instrumentation, rng: queries.Range) -> Block:
        """:meth:`points` in columns, only the steps that hold data (:func:`queries.data_block`;
        with imported logs added as :meth:`points` adds them)."""
        block = queries.data_block(inst, self.aggregator.window(inst.id), rng, self.aggregator.topk,
                                   self.history)
        topk = inst.keys_kept(self.aggregator.topk)
        extra = imported.imported_points(self.control.store, inst, rng, topk)
        if not extra:
            return block
        merged = imported.with_imported(queries.block_points(inst, block, rng), extra, inst.shape, topk)
        return from_points([p for p in merged if p.value is not None], inst.shape)

    def exported(self, inst: Instrumentation, points: Iterable[DataPoint], start: int, end: int,
                 step: int) -> Iterator[DataPoint]:
        """An export's ``points`` (live: window and history, gaps left out) with imported logs
        added as :meth:`points` adds them, streamed (:func:`imported.stream_with_imported`)."""
        return imported.stream_with_imported(self.control.store, inst, points, start, end, step,
                                             inst.keys_kept(self.aggregator.topk))

    def latest(self, inst: Instrumentation) -> int | None:
        """The start of the latest final slot in the real-time window, if any."""
        window = self.aggregator.window(inst.id)
        return window.latest() if window else None

    def tiers(self, inst: Instrumentation):
        """The tiers a range of ``inst`` can be read from."""
        return queries.tiers_of(inst, self.history)

    def envelopes(self, inst: Instrumentation, rng: queries.Range) -> dict[int, queries.Envelope]:
        """Per step of ``rng``, the least and the largest finer point (:func:`queries.envelopes`;
        window and history: imported logs have no finer points than their own)."""
        return queries.envelopes(inst, self.aggregator.window(inst.id), rng, self.history)

    def resolution(self, inst: Instrumentation, rng: queries.Range) -> int:
        """The resolution (seconds) of the data that answers ``rng``."""
        return queries.resolution(inst, rng, self.history)

    def unit(self, inst: Instrumentation) -> Type | None:
        """The unit of ``inst``'s values (a distribution: of its numeric field); None when its
        metric is not in the catalogue (any more)."""
        try:
            metric = self.control.catalog.get(inst.module, inst.stat)
            return metric.field(inst.numeric).type if inst.numeric else metric.unit
        except InputError:
            return None


async def services(request: Request) -> Services:
    """The app's services (a dependency; async, so it runs inline, not in a thread)."""
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]
