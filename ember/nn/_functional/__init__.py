"""Parts of ``ember.nn.functional`` kept in their own files (functional.py re-exports
them): activations, losses, convolutions and normalizations, resampling."""
