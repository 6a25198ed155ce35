"""Task folder: relaxed E(3) graph networks. ``task.run`` is what ``symgym task`` calls."""
