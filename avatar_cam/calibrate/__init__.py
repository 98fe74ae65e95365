"""Enrollment: turn a clip of a person (a video file, or a camera recording that passed
the liveness check), or 1 to 8 photos, into calibration/<name>/.

A clip gives the person's photo (the frame the warp renderer draws from), their neutral
landmarks, the landmark codec's basis and (unless ``--no-train``) a personalized
generator trained on its frames, the last fifth held out for ``evaluate``; photos give
the same but a generator only with ``--train``. The folder is signed over every file.
``commands.py`` wires `calibrate`, `evaluate`, `metatrain` and `prepare`.
"""
