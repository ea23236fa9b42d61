"""Radiomics extraction: image and mask input (DICOM, NIfTI, NRRD) and pyradiomics feature extraction."""
