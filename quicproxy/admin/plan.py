"""AdminPlan: what the admin listener needs from the configuration, fixed before forking."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config

__all__ = ["AdminPlan", "backend_address"]


def backend_address(host: str, port: int) -> str:
    """A backend's name as balancers key it: ``host:port`` (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class AdminPlan:
    """The admin address and the configured upstream groups with their backend addresses."""

    host: str
    port: int
    upstreams: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> AdminPlan | None:
        """The plan for ``config``; None when it has no ``[admin]`` table."""
        if config.admin is None:
            return None
        groups = tuple(
            (u.name, tuple(backend_address(host, port) for host, port in u.addresses))
            for u in config.upstreams
        )
        return cls(config.admin.host, config.admin.port, groups)
