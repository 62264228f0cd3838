"""The sweep core: one workflow over many values, shared by the sweep command
(:mod:`nodegen.sweep`: local worker processes, Ray) and the editor.

``specs`` (the value syntax), ``axes`` (specs resolved to node inputs, typed and checked), ``plan``
(the jobs, in cache order), ``worker`` (a warm Engine running jobs with provenance), ``resume``
(which jobs are done), ``manifest`` (``sweep.jsonl``), ``grid`` (the X/Y image) and ``session``
(:class:`~nodegen.runtime.sweep.session.Sweep`, which ties them together).
"""
