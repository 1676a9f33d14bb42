"""A minimal Flower app of a user's own that uses an fl-poison defense as its strategy."""
