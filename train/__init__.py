"""Shard datasets, teacher pre-training, HKDSME student distillation (`hkd-train`)."""
