"""Glue every trainer-backed stage shares: exact packing, the trainer log, checkpoints, defaults."""
