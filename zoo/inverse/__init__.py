"""Inverse problems: the MRI operator, data-fidelity terms and plug-and-play solvers of Ryu et al. (2019)."""
