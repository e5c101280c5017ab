"""Event-time windows per key, in memory: tumbling, hopping and session windows, their aggregates,
the watermark per stream and lateness. Pure logic; handlers.log.windows persists it.

Every rule depends only on the events in log order, never on how they are cut into batches, so a
replay or a resume after a crash closes the same windows with the same aggregates:

- the watermark of a window is the largest `ts` of its stream seen so far minus the window's grace;
- an event is late for a window definition when a window it belongs to had already closed, judged
  against the watermark *before* the event; a late event still counts towards its open windows
  (hopping) and is counted in `late`, never dropped silently;
- a tumbling or hopping window [start, end) closes once the watermark reaches its end; a session
  (first ts, last ts) once the watermark reaches its last ts plus the gap, and an event merges into
  the open sessions of its key within `gap` of it (sessions that may close already are left alone);
- windows are closed at the end of each batch: equivalent to closing them event by event, because
  a window whose end the watermark passed takes no more events either way.
"""
from __future__ import annotations

import heapq
import json
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import orjson

from modelbus.messages.types import Raw
from modelbus.messages.windows import WindowSpec

_SKIP = object()


def _dumps(value: Any) -> str:
    """Stored state as JSON: orjson (floats written shortest, read back the same), json for integers beyond 64 bits."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))

_ADD, _MIN, _MAX, _AVG, _SET = range(5)


class ClosedWindow(NamedTuple):
    """A closed window: its key, start and end (epoch ms) and the aggregates in declared order."""

    window: str
    key: str
    start_ms: int
    end_ms: int
    values: tuple[Any, ...]


def _kind_of(value: Any) -> str | None:
    """The JSON kind of a field value: 'b'oolean, 'n'umber, 's'tring (None when absent)."""
    if value is None:
        return None
    if value is True or value is False:
        return "b"
    if isinstance(value, (int, float)):
        return "n"
    return "s"


def _number(value: Any) -> Any:
    """A field value that is a number (not a boolean), else _SKIP."""
    if value is None or value is True or value is False or isinstance(value, str):
        return _SKIP
    return value


class _Aggregate:
    """One declared aggregate compiled: what an event contributes, how to fold, merge, store and show it."""

    def __init__(self, fn: str, field: str | None, where: tuple[str, Any] | None):
        self.fn = fn
        self.field = field
        self.where = where
        self.contribution = self._compile()

    def _compile(self) -> Callable[[dict[str, Any]], Any]:
        """What one event adds to this aggregate (_SKIP for nothing), as one small function."""
        fn, field = self.fn, self.field
        if fn == "duration":
            value: Callable[[dict[str, Any]], Any] = lambda fields: _SKIP
        elif fn == "count" and field is None:
            value = lambda fields: 1
        elif fn == "count":
            value = lambda fields: _SKIP if fields.get(field) is None else 1
        elif fn == "distinct_count":
            def value(fields: dict[str, Any]) -> Any:
                item = fields.get(field)
                kind = _kind_of(item)
                return _SKIP if kind is None else (kind, item)
        else:
            value = lambda fields: _number(fields.get(field))
        if self.where is None:
            return value
        where_field, equals = self.where
        where_kind = _kind_of(equals)
        if where_kind == "s":
            # Only a string equals a string: no kind to compare.
            return lambda fields: value(fields) if fields.get(where_field) == equals else _SKIP

        def matching(fields: dict[str, Any]) -> Any:
            item = fields.get(where_field)
            if item != equals or _kind_of(item) != where_kind:
                return _SKIP
            return value(fields)
        return matching

    def empty(self) -> Any:
        fn = self.fn
        if fn in ("count", "sum"):
            return 0
        if fn == "avg":
            return [0, 0]
        if fn == "distinct_count":
            return set()
        return None

    def merge(self, a: Any, b: Any) -> Any:
        fn = self.fn
        if fn in ("count", "sum"):
            return a + b
        if fn in ("min", "max"):
            if a is None or b is None:
                return b if a is None else a
            return min(a, b) if fn == "min" else max(a, b)
        if fn == "avg":
            return [a[0] + b[0], a[1] + b[1]]
        if fn == "distinct_count":
            return a | b
        return None

    def dump(self, acc: Any) -> Any:
        if self.fn == "distinct_count":
            return sorted([kind, value] for kind, value in acc)
        return acc

    def load(self, stored: Any) -> Any:
        if self.fn == "distinct_count":
            return {(kind, value) for kind, value in stored}
        return stored


def _fold(windows: list[list[Any]], plan: list[tuple[int, int, Any]]) -> None:
    """Add one event's values to the accumulators of each of its windows (inlined: it runs per event;
    aggregate by aggregate, so a hopping event's windows share the work of reading the plan)."""
    for i, code, value in plan:
        if code == _ADD:
            for accs in windows:
                accs[i] += value
        elif code == _MIN:
            for accs in windows:
                if accs[i] is None or value < accs[i]:
                    accs[i] = value
        elif code == _MAX:
            for accs in windows:
                if accs[i] is None or value > accs[i]:
                    accs[i] = value
        elif code == _AVG:
            for accs in windows:
                acc = accs[i]
                acc[0] += 1
                acc[1] += value
        else:
            for accs in windows:
                accs[i].add(value)


class _Slot:
    """One open window of one key: its bounds and accumulators."""

    __slots__ = ("start", "end", "accs")

    def __init__(self, start: int, end: int, accs: list[Any]):
        self.start = start
        self.end = end
        self.accs = accs


class WindowState:
    """The open windows of one declared window, for the keys one handler owns.

    Windows keeps one stored row per key holding the open windows of every declared window, so a
    batch writes one row per key it touched, however many windows an event falls in.
    """

    def __init__(self, spec: WindowSpec, touched: set[str] | None = None):
        self.spec = spec
        self.aggregates = [_Aggregate(a.fn, a.field, (a.where.field, a.where.equals) if a.where else None)
                           for a in spec.aggregates]
        # How each aggregate folds a value (duration folds nothing: it is the session's length).
        codes = {"count": _ADD, "sum": _ADD, "min": _MIN, "max": _MAX, "avg": _AVG, "distinct_count": _SET}
        # (accumulator, how it folds, what an event contributes) of each aggregate that folds something.
        self.folders = [(i, codes[agg.fn], agg.contribution) for i, agg in enumerate(self.aggregates) if agg.fn in codes]
        # Windows whose aggregates are declared alike share one plan per event (Windows.add).
        # (True equals 1 in Python: the kind of `equals` is part of it.)
        self.signature = tuple((a.fn, a.field, a.where, a.where and _kind_of(a.where[1])) for a in self.aggregates)
        self.has_sets = any(agg.fn == "distinct_count" for agg in self.aggregates)
        # New accumulators: a copy of the empty ones, with new lists (avg) and sets (distinct_count) put in.
        self.empties = [agg.empty() for agg in self.aggregates]
        self.avg_accs = [i for i, agg in enumerate(self.aggregates) if agg.fn == "avg"]
        self.set_accs = [i for i, agg in enumerate(self.aggregates) if agg.fn == "distinct_count"]
        self.duration_accs = [i for i, agg in enumerate(self.aggregates) if agg.fn == "duration"]
        self.session = spec.kind == "session"
        self.size = spec.size or 0
        self.advance = spec.advance or spec.size or 0
        self.gap = spec.gap or 0
        # key -> start -> open window.
        self.keys: dict[str, dict[int, _Slot]] = {}
        # Sessions: (close time, key, start) of every open session; entries of merged sessions go stale.
        self.heap: list[tuple[int, str, int]] = []
        # Tumbling and hopping: the keys of the open windows ending at each end, and those ends as a heap
        # (every window ending there starts at end - size: closing them is sorting the keys).
        self.ends: dict[int, list[str]] = {}
        self.end_heap: list[int] = []
        # Keys whose open windows changed since the last write (shared by every window of a handler).
        self.touched: set[str] = set() if touched is None else touched
        self.late = 0
        self.closed = 0

    # --- events ---------------------------------------------------------------------------

    def plan(self, fields: dict[str, Any]) -> list[tuple[int, int, Any]]:
        """What one event adds, once for all its windows: (accumulator, how, value), without what it skips."""
        return [(i, code, value) for i, code, contribution in self.folders
                if (value := contribution(fields)) is not _SKIP]

    def fresh(self) -> list[Any]:
        """Empty accumulators for a new window."""
        accs = self.empties.copy()
        for i in self.avg_accs:
            accs[i] = [0, 0]  # _Aggregate.empty, inlined: it runs per new window
        for i in self.set_accs:
            accs[i] = set()
        return accs

    def add(self, key: str, ts: int, fields: dict[str, Any], watermark: int) -> None:
        """Count one event of an owned key; `watermark` is this window's before the event."""
        self.add_planned(key, ts, self.plan(fields), watermark)

    def add_planned(self, key: str, ts: int, plan: list[tuple[int, int, Any]], watermark: int) -> None:
        """Count one event whose plan (WindowState.plan) is made; `watermark` is this window's before the event."""
        if self.session:
            self._add_session(key, ts, plan, watermark)
            return
        slots = self.keys.get(key)
        if slots is None:
            slots = self.keys[key] = {}
        size, advance = self.size, self.advance
        start = ts - ts % advance
        windows = []
        while start > ts - size:
            end = start + size
            if end <= watermark:
                # Earlier windows end earlier: closed too.
                self.late += 1
                break
            slot = slots.get(start)
            if slot is None:
                slot = slots[start] = _Slot(start, end, self.fresh())
                self._opened(key, end)
            windows.append(slot.accs)
            start -= advance
        _fold(windows, plan)
        self.touched.add(key)

    def _opened(self, key: str, end: int) -> None:
        """Note a new tumbling or hopping window of `key` ending at `end`."""
        keys = self.ends.get(end)
        if keys is None:
            self.ends[end] = [key]
            heapq.heappush(self.end_heap, end)
        else:
            keys.append(key)

    def _add_session(self, key: str, ts: int, plan: list[tuple[int, int, Any]], watermark: int) -> None:
        gap = self.gap
        if ts + gap <= watermark:
            self.late += 1
            return
        slots = self.keys.get(key)
        if slots is None:
            slots = self.keys[key] = {}
        # A session the watermark may close already takes nothing more, however batches fall.
        joined = [slot for slot in slots.values()
                  if slot.end + gap > watermark and slot.start - gap < ts < slot.end + gap]
        if len(joined) == 1:
            # The common case: the event falls in or next to one session; folding it there gives
            # what merging a session of this one event would.
            slot = joined[0]
            _fold([slot.accs], plan)
            if slot.start <= ts <= slot.end:
                self.touched.add(key)
                return  # its heap entry (close time, key, start) still holds
            if ts < slot.start:
                del slots[slot.start]
                slot.start = ts
                slots[ts] = slot
            if ts > slot.end:
                slot.end = ts
        else:
            slot = _Slot(ts, ts, self.fresh())
            _fold([slot.accs], plan)
            for other in sorted(joined, key=lambda s: s.start):
                slot.start = min(slot.start, other.start)
                slot.end = max(slot.end, other.end)
                slot.accs = [agg.merge(a, b) for agg, a, b in zip(self.aggregates, other.accs, slot.accs)]
                del slots[other.start]
            slots[slot.start] = slot
        heapq.heappush(self.heap, (slot.end + gap, key, slot.start))
        self.touched.add(key)

    # --- closing --------------------------------------------------------------------------

    def close(self, watermark: int) -> list[ClosedWindow]:
        """Close every window the watermark has reached; their rows, in close order."""
        if not self.session:
            return self._close_ends(watermark)
        heap, rows, gap, name = self.heap, [], self.gap, self.spec.name
        while heap and heap[0][0] <= watermark:
            close_at, key, start = heapq.heappop(heap)
            slots = self.keys.get(key)
            slot = slots.get(start) if slots else None
            if slot is None or (self.session and slot.end + gap != close_at):
                continue  # a session merged or extended since this entry
            del slots[start]  # type: ignore[union-attr]
            if not slots:
                del self.keys[key]
            rows.append(ClosedWindow(name, key, slot.start, slot.end, self._shown(slot.accs, slot.start, slot.end)))
            self.touched.add(key)
        self.closed += len(rows)
        return rows

    def _shown(self, accs: list[Any], start: int, end: int) -> tuple[Any, ...]:
        """A closing window's aggregates as shown: avg the mean (None without values), distinct_count
        the number of values, duration the session's seconds; count, sum, min and max their
        accumulator as it is. Takes over `accs` (the window is gone)."""
        for i in self.avg_accs:
            count, total = accs[i]
            accs[i] = total / count if count else None
        for i in self.set_accs:
            accs[i] = len(accs[i])
        for i in self.duration_accs:
            accs[i] = (end - start) / 1000
        return tuple(accs)

    def _close_ends(self, watermark: int) -> list[ClosedWindow]:
        """Close the tumbling or hopping windows the watermark reached: by end, then key."""
        rows: list[ClosedWindow] = []
        append, name, keys, touched = rows.append, self.spec.name, self.keys, self.touched
        shown = self._shown
        while self.end_heap and self.end_heap[0] <= watermark:
            end = heapq.heappop(self.end_heap)
            start = end - self.size
            closing = sorted(self.ends.pop(end))
            for key in closing:
                slots = keys[key]
                accs = slots.pop(start).accs
                if not slots:
                    del keys[key]
                append(ClosedWindow(name, key, start, end, shown(accs, start, end)))
            touched.update(closing)
        self.closed += len(rows)
        return rows

    # --- persistence ----------------------------------------------------------------------

    def dump(self, key: str) -> list[Any] | None:
        """A key's open windows as stored: [[start, end, [accumulators]], ...], or None when it has none."""
        slots = self.keys.get(key)
        if not slots:
            self.keys.pop(key, None)
            return None
        if not self.has_sets:  # every accumulator is JSON as it is
            return [[slot.start, slot.end, slot.accs] for _, slot in sorted(slots.items())]
        return [[slot.start, slot.end, [agg.dump(acc) for agg, acc in zip(self.aggregates, slot.accs)]]
                for _, slot in sorted(slots.items())]

    def load(self, key: str, stored: list[Any]) -> None:
        """Restore one key's open windows as stored."""
        slots = self.keys[key] = {}
        for start, end, accs in stored:
            slots[start] = _Slot(start, end, [agg.load(value) for agg, value in zip(self.aggregates, accs)])
            if self.session:
                heapq.heappush(self.heap, (end + self.gap, key, start))
            else:
                self._opened(key, end)

    def open_count(self) -> int:
        """How many windows are open."""
        return sum(len(slots) for slots in self.keys.values())


class Windows:
    """Every declared window over the events of the keys one handler owns, with the streams' watermarks."""

    def __init__(self, specs: Sequence[WindowSpec], owns: Callable[[str], bool] | None = None):
        self.touched: set[str] = set()
        self.stored: set[str] = set()
        self.states = {spec.name: WindowState(spec, self.touched) for spec in specs}
        self.by_stream: dict[str, list[WindowState]] = {}
        for state in self.states.values():
            self.by_stream.setdefault(state.spec.stream, []).append(state)
        # Per stream: the windows that make an event's plan, and each window with the index of the plan it takes.
        self.planners: dict[str, tuple[list[WindowState], list[tuple[WindowState, int, int]]]] = {}
        for stream, states in self.by_stream.items():
            makers: dict[tuple, int] = {}
            planners = []
            for state in states:
                if state.signature not in makers:
                    makers[state.signature] = len(planners)
                    planners.append(state)
            self.planners[stream] = (planners, [(state, makers[state.signature], state.spec.grace) for state in states])
        self.owns = owns
        # The largest ts seen per stream, over every key (each shard sees the whole stream).
        self.max_ts: dict[str, int] = {}

    def streams(self) -> list[str]:
        """The streams some window reads."""
        return sorted(self.by_stream)

    def watermark(self, state: WindowState) -> int | None:
        """A window's watermark: its stream's largest ts minus its grace (None before any event)."""
        top = self.max_ts.get(state.spec.stream)
        return None if top is None else top - state.spec.grace

    def add(self, event: Raw) -> None:
        """Apply one raw event in log order."""
        self.add_fields(event.stream, event.key, event.ts_ms, event.fields)

    def add_fields(self, stream: str, key: str, ts: int, fields: dict[str, Any]) -> None:
        """Apply one raw event, given by its parts, in log order."""
        planners = self.planners.get(stream)
        if planners is None:
            return
        top = self.max_ts.get(stream)
        if self.owns is None or self.owns(key):  # None: every key
            makers, states = planners
            plans = [maker.plan(fields) for maker in makers]
            for state, plan, grace in states:
                state.add_planned(key, ts, plans[plan], -(2**62) if top is None else top - grace)
        if top is None or ts > top:
            self.max_ts[stream] = ts

    def close(self) -> list[ClosedWindow]:
        """Close every window its watermark has reached; rows by window (in declared order), then end, key and start
        (the order each window's heap gives them: a session's close time orders as its end)."""
        rows: list[ClosedWindow] = []
        for state in self.states.values():
            watermark = self.watermark(state)
            if watermark is not None:
                rows.extend(state.close(watermark))
        return rows

    def changes(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Since the last call: keys whose stored row to delete (no window open any more), and (key, state) to write.

        A key's state is JSON {window: [[start, end, [accumulators]], ...]} that reads back to the same values.
        """
        deletes, writes = [], []
        for key in sorted(self.touched):
            state = {}
            for name, window in self.states.items():
                dumped = window.dump(key)
                if dumped is not None:
                    state[name] = dumped
            if state:
                writes.append((key, _dumps(state)))
                self.stored.add(key)
            elif key in self.stored:
                deletes.append(key)
                self.stored.discard(key)
        self.touched.clear()
        return deletes, writes

    def load(self, max_ts: dict[str, int], counters: dict[str, tuple[int, int]],
             open_rows: Iterable[tuple[str, str]]) -> None:
        """Restore the state a store kept: watermarks, (late, closed) per window, each key's open windows."""
        self.max_ts = dict(max_ts)
        for name, (late, closed) in counters.items():
            if name in self.states:
                self.states[name].late, self.states[name].closed = late, closed
        for key, state in open_rows:
            for name, stored in orjson.loads(state).items():
                if name in self.states:
                    self.states[name].load(key, stored)
            self.stored.add(key)
