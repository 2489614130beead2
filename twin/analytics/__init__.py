"""Population analytics on twins: cohort what-if runs and the calibration of the priors."""
