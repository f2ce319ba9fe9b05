"""``hgsearch bench --suite gpu``: what hgsearch's CUDA path costs (suite.py runs the parts)."""
