"""Load balancing: backend selection algorithms."""

from .selection import RoundRobin

__all__ = ["RoundRobin"]
