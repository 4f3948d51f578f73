"""Datasets: each returns host-memory splits of images and class-index masks."""
