"""Everything checked before anything is recorded. ``recipe``: what a recipe's shape cannot
tell by itself (component names and arguments against the registries, the freeze depth, the
tune section); ``preflight``: what only loading can tell (the data, the weights files, the
devices). Above both the recipe leaf and the components, which know nothing of each other."""
