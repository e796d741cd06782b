"""MedTrim: meta-entity triplet alignment of images and reports (arXiv 2504.15929)."""
