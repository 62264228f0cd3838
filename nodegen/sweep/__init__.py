"""The sweep command (``python main.py sweep``): one saved workflow over many values, on local
worker processes or on Ray actors, each holding a warm Engine. The sweep itself (job order,
resume, the manifest, the grid) is the shared core in :mod:`nodegen.runtime.sweep`; this package
adds the driver (:mod:`nodegen.sweep.driver`) and the places jobs run."""
