"""dbfleet's HTTP surface: the ``http:`` settings, API tokens, the FastAPI app
(:mod:`dbfleet.web.app`) and the uvicorn thread that serves it inside
``dbfleet serve`` or ``dbfleet web`` (:mod:`dbfleet.web.server`)."""
