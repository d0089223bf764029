"""What every DVC stage process needs: atomic outputs, disk-full errors, dying with its dvc."""
