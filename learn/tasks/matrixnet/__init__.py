"""Task folder: MatrixNet: learned matrix representations of group words. ``task.run`` is what ``symgym task`` calls."""
