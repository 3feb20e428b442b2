"""Scale-out: how serving replicas follow the shared head row and how one trainer holds the lease.

Only the store's interfaces are used here (no database driver): the same code runs over the
embedded SQLite store (one process) and PostgreSQL (replicas and a trainer).
"""

from service.cluster.duty import TrainerDuty
from service.cluster.follower import Follower, HeadFollower
from service.cluster.pointers import LeaseHeadPointer, StoreHeadPointer, replica_name
from service.cluster.versions import adopt_volume, recorder

__all__ = [
    "Follower",
    "HeadFollower",
    "LeaseHeadPointer",
    "StoreHeadPointer",
    "TrainerDuty",
    "adopt_volume",
    "recorder",
    "replica_name",
]
