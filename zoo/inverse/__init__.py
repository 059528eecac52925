"""Inverse problems: the MRI operator, data-fidelity terms and plug-and-play solvers of Ryu et al. (2019), TV-PDHG,
the Lipschitz certificate of a trained denoiser and readers of the plug-and-play paper's data. The paper experiments
built on them are projects/pnp and projects/pdnet."""
