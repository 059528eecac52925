"""PD-Net (Cheng et al., MICCAI 2019) against the classical MRI reconstructions: projects/pdnet/README.md."""
