"""Batch scoring at scale: input shards for job arrays and the Ray Data engine."""
