"""Casemesh appeals service: copyright takedown notices, counter-notices and
appeals of copyright decisions, on the time limits of a jurisdiction."""
