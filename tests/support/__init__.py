"""Shared helpers for the integration tests: real processes, real clients, loopback only."""
