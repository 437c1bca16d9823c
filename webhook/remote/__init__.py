"""Reaching a build host: the SSH runner and its failure kinds."""
