"""Sweeps: one saved workflow over many values (``python main.py sweep``), on local worker
processes or on Ray actors, each holding a warm Engine. See :mod:`nodegen.sweep.driver`."""
