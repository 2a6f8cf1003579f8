"""Downstream connection handlers: they turn client connections into sessions and pipeline tasks."""
