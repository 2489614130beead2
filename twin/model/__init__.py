"""The twin model of ``twin-model.md``: parameters, pharmacology, latent dynamics, observations."""
