"""Tabular evaluators: look a plain candidate's metrics up in an offline benchmark.

A tabular benchmark answers in microseconds what training would answer in hours, so
search strategies can be studied over many seeds. ``nasbench_graph`` is the one built
in (NAS-Bench-Graph, Qin et al. 2022); its data is loaded by ``safe_pickle``, which
never executes code from the file.
"""
