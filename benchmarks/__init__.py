"""Benchmarks (`make bench`): each figure is compared, in the same run, with a peer doing the bare minimum."""
