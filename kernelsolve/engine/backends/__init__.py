"""Targets that execute one (formula, reduction): reference (NumPy), cpu, cuda."""
