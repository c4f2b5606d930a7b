"""Plan, PlanEntry, Verdict: a planner decision read from a moe_plan."""

import ctypes
import enum
from typing import NamedTuple

from . import _lib
from ._errors import error_for

class Verdict(enum.Enum):
    """What the planner decided about one backend (moe_verdict)."""
    CHOSEN = 0
    REJECTED = 1
    FAILED_CHECK = 2
    NOT_TRIED = 3

    def __str__(self):
        return self.name.lower().replace("_", "-")


class PlanEntry(NamedTuple):
    backend: str
    verdict: Verdict
    reason: str


class Plan:
    """A planner decision: one entry per backend, the chosen one, and the
    library's text table (str(plan))."""

    def __init__(self, entries, chosen, fell_back, text):
        self.entries = list(entries)
        self.chosen = chosen
        self.fell_back = fell_back
        self.text = text

    @classmethod
    def _from_handle(cls, lib, p):
        n = lib.moe_plan_num_entries(p)
        entries = []
        for i in range(n):
            e = _lib.PlanEntry()
            st = lib.moe_plan_entry_get(p, i, ctypes.byref(e))
            if st != 0:
                raise error_for(st, "plan entry %d unreadable" % i,
                                "moe_plan_entry_get")
            try:
                verdict = Verdict(e.verdict)
            except ValueError:
                verdict = e.verdict
            entries.append(PlanEntry(_lib.cstr(e.backend), verdict,
                                     _lib.cstr(e.reason)))
        chosen = lib.moe_plan_backend(p)
        size = lib.moe_plan_explain(p, None, 0)
        buf = ctypes.create_string_buffer(size + 1)
        lib.moe_plan_explain(p, buf, size + 1)
        return cls(entries, _lib.cstr(chosen) if chosen else None,
                   bool(lib.moe_plan_fell_back(p)), _lib.cstr(buf.value))

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        return self.entries[i]

    def entry(self, backend):
        """The entry for a backend name, or None."""
        for e in self.entries:
            if e.backend == backend:
                return e
        return None

    def __str__(self):
        return self.text

    def __repr__(self):
        return "<moe.Plan chosen=%r fell_back=%r entries=%r>" % (
            self.chosen, self.fell_back,
            [(e.backend, str(e.verdict)) for e in self.entries])
