"""xlrepro: English intermediate-task training for zero-shot cross-lingual transfer, reproduced.

Reproduces Phang et al. 2020 (arXiv 2005.13013) and runs a data-volume scaling study on
XTREME and XTREME-R. See README.md and ARTIFACT.md.
"""
__version__ = "0.1.0"
