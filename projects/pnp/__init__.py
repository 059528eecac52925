"""The plug-and-play paper (Ryu et al., ICML 2019) reproduced: projects/pnp/README.md."""
