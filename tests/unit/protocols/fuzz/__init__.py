"""Property-based fuzzing of the protocol adapters (hypothesis)."""
