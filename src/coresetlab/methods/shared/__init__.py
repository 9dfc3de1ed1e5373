"""Pieces every paper uses: importance sampling, structural surgery."""
