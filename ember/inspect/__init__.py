"""Seeing inside the compiler: explain(), logs."""
