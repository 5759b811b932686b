"""The vocabulary workbench: calibration, trying a description, galleries."""
