"""Traces: the ITF format, recording a run, and replaying a trace through the machines."""
