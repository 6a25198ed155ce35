"""Task folder: IAEmu: an emulator of galaxy intrinsic-alignment statistics. ``task.run`` is what ``symgym task`` calls."""
