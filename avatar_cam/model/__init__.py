"""The paper's networks (Zakharov et al. 2019): embedder E, AdaIN generator G (full-size
and real-time variants), projection discriminator D, and the losses that train them.

torch is imported by these modules; the live path imports only ``generator`` (through
``render.neural``), never the training code.
"""
