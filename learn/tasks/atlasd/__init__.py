"""Task folder: AtlasD: local symmetry discovery with atlases of chart predictors. ``task.run`` is what ``symgym task`` calls."""
