"""Image-text data: phantom chest radiographs with reports, readers for paired image-report corpora."""
