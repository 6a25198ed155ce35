"""Task folder: Denoising Hamiltonian Networks against HNN and a plain network. ``task.run`` is what ``symgym task`` calls."""
