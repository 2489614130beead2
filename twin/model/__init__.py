"""The twin model of ``docs/model.md``: parameters, pharmacology, latent dynamics, observations."""
