"""Upstream side: peers, connections to them and the pool that reuses those connections."""

from .peer import HttpPeer, PeerKey
from .pool import UpstreamPool

__all__ = ["HttpPeer", "PeerKey", "UpstreamPool"]
