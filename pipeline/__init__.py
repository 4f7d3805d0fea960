"""Datasets → CFP features + harmonic labels → chunked HDF5 shards (`hkd-prep`)."""
