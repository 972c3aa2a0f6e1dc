"""Synthetic physics data generators (reduced-order solvers) for the physics family."""
