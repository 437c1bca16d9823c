"""A WSGI app for tests of the gunicorn worker itself (tests/test_gunicorn_run.py): GET
/large answers 64 MiB, more than any socket buffer holds for a client that never reads it;
any other path answers `ok`."""

CHUNK = b"x" * (1024 * 1024)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/large":
        start_response("200 OK", [("Content-Length", str(64 * len(CHUNK)))])
        return (CHUNK for _ in range(64))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
