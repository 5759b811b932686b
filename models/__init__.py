"""The CLIP runtime: encoders behind one interface, image loading, and the model registry."""
