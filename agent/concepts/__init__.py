"""Concepts over WordNet: what users' words mean in the model's classes (`index.py`), read from WordNet's own
noun files (`wordnet.py`). Imports nothing of ours."""
