"""The export stage's web side, on one HTTP port: ``/metrics`` (prometheus_client's exposition of
the injected registry), the JSON API (:mod:`.api`, answered from the latest report and the state
view published with it), its OpenAPI document (:mod:`.openapi`, built from the route table of
:mod:`.routing`), the report page (:mod:`.report`, :mod:`.charts`, ``static/``) and the probes,
served by :class:`~saewatch.export.web.http.ExporterServer` on the standard library's threading
server (why not a framework: docs/ARCHITECTURE.md, "The HTTP side").
"""
