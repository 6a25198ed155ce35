"""Task folder: mesh-topology sensitivity of neural radar simulators. ``task.run`` is what ``symgym task`` calls."""
