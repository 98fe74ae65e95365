"""Enrollment: turn photos (and, later, clips) of a person into calibration/<name>/."""
