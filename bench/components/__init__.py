"""Components by name: ``registry`` maps names (or ``package.module:Name`` import paths) to
components; ``catalog`` lists the built-in names and torch classes' arguments as plain data,
so ``bench run --dry-run`` validates without importing torch."""
