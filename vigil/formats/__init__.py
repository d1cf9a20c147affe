"""What a file is, before any database or settings: the one list of media types, what its first bytes say
it is (`magic`: container family, kind, content type; the watcher and the review page both read it), the
quick probe that says whether a file is a readable video or image (`MediaInfo`), and reference images of
targets given by example (checked as rasters, copied under their content hash, read back).

May import: vigil.errors
"""
