"""The data layer: find and decode a data set once, split it, and feed batches from the device."""
