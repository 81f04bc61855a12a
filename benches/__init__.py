"""Benchmarks of nucleus against its peers (runc, crun, bubblewrap, gVisor) on this machine.

`make bench` (or `python -m benches`) runs every benchmark with the runs interleaved across
runtimes, writes bench-results/latest.json and latest.md, and refreshes the table in
BENCHMARKS.md. Nothing here asserts a number: the targets are reported, never enforced.
"""
