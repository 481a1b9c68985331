"""``bench plan``: ``schedule`` steps every variant's optimizer through the engine's own
stepping rule without training and records the LR and momentum per param group and step;
``checks`` holds the warnings for combinations known to be wrong."""
