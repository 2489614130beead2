"""Assimilation: twin state, particle filter kernel, EnKF and Kalman cross-checks."""
