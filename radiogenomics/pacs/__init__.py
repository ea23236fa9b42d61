"""The hospital's PACS through DICOMweb: retrieve a CT and its segmentation, store results as DICOM SR.

- `config`: where the PACS is (URL, auth header file, CA bundle, timeout): set on the server, never
  taken from a request.
- `client`: a `dicomweb-client` session for it, with every transport failure turned into our errors
  (unreachable or timing out: `Unavailable`; unknown study or series: `NotFound`).
- `retrieve`: QIDO-RS / WADO-RS metadata checks (a CT, a segmentation that references it, the voxel
  limit) before any pixel moves, then the series streamed into a scratch folder under a byte limit.
- `report`: the features of a case as a TID 1500 Comprehensive 3D SR (highdicom), and back.
- `extract`: one case end to end, through the same DICOM readers and extraction as uploads.
"""
