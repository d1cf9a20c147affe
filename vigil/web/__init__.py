"""The review page, `vigil web`: server-rendered pages, media served by row id, the feedback POSTs.

`vigil.web.urls` is importable without the web framework (alert payloads build links with it).

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store, vigil.ops,
vigil.media, vigil.feedback
"""
