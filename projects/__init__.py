"""The paper projects: experiments that reproduce or evaluate a paper with the zoo library, one subpackage each.

They are applications of the library, not part of it: they may import the repository's `configs/`, read their flags
in `main`, and write their results (results.json, table.md, a figure) into their own folder, whose README.md is the
project's page. Run from the repository root: `python -m projects.pnp.experiment`, `python -m
projects.pdnet.experiment`, `python -m projects.faceguard.evaluate`, `python -m projects.faceguard.cli`.
"""
