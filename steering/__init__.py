"""steering — protein generation steered by SAE latents and VLM narrow-gate analyses (built on ``hooks``)."""
