"""Load balancing: backends, selection algorithms, health checks and the per-group balancer."""

from .backends import Backend, BackendSet
from .balancer import LoadBalancer
from .selection import (
    Ketama,
    LeastConnections,
    PowerOfTwoChoices,
    Random,
    RoundRobin,
    Selector,
    WeightedRoundRobin,
    hash_key_value,
    selector_by_name,
)

__all__ = [
    "Backend",
    "BackendSet",
    "Ketama",
    "LeastConnections",
    "LoadBalancer",
    "PowerOfTwoChoices",
    "Random",
    "RoundRobin",
    "Selector",
    "WeightedRoundRobin",
    "hash_key_value",
    "selector_by_name",
]
