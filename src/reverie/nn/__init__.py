"""Neural-network building blocks: distributions, MLPs, GRU, convolutional encoder/decoder."""
