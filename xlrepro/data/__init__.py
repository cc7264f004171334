"""Data: example types per task format, readers of the original file formats, and features."""
