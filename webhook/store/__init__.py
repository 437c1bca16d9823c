"""The state store: each target's row, its run history and the signed deliveries seen."""
