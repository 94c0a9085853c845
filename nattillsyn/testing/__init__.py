"""Test support, not used by services: harnesses that the tests and the benchmarks share
(`partition`: a care home cut off from the centre, with network namespaces)."""
