"""FaceGuard (Yang et al. 2021): its evaluation and its embed / verify command line: projects/faceguard/README.md."""
