"""Benchmarks behind `make bench`; each writes a JSON file under outputs/bench/."""
