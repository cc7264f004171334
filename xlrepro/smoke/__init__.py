"""The smoke world: a small generated multilingual world in the real tasks' file formats.

``xlrepro reproduce smoke`` runs every phase of the pipeline on it, offline on a CPU, in
minutes. It is a test of the pipeline, not a stand-in for the paper's numbers.
"""
