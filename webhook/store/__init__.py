"""The state store: what every backend keeps (records.py), and its SQL (base.py).

A backend stores; it never decides. `claim` is a compare-and-set: it records a
new run only when the target's state is still the one the service decided
on, so concurrent requests in any number of workers (or replicas) start at
most one prune per target.
"""

from webhook.store.base import Store
from webhook.store.records import NewRun, RunRecord, StateConflict, StoreUnavailable, TargetRecord

__all__ = ["NewRun", "RunRecord", "StateConflict", "Store", "StoreUnavailable", "TargetRecord"]
