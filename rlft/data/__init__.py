"""Rows in rlft's canonical columns: loading (``rows``), preference shapes (``preference``), augmentation
(``augment``) and the bundled data sets (``bundled``). This layer knows nothing of recipes or stages."""
