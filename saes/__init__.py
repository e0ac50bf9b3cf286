"""saes — sparse autoencoders trained on activations of any hooked model (built on ``hooks``)."""
