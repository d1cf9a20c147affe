"""The review page, `vigil web`. This package stays torch-free and never imports `workers`.

`vigil.web.urls` is importable without the web framework (alert payloads build links with it).
"""
