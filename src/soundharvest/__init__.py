"""soundharvest: learn to recognise musical instruments from weakly labelled web audio.

The package holds all the logic of the workflow; ``workflow/scripts`` only adapt Snakemake's
``snakemake`` object to the functions here. Nothing in this package imports Snakemake.
"""

__version__ = "0.1.0"
