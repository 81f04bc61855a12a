"""Test doubles of nucleus's seams (the libc module of the effects: tests/fakes/libc.py)."""
