"""Entry points for function platforms: Cloud Run functions (`cloud_run`) and AWS Lambda
(`aws_lambda`), each an optional extra (`.[gcp]`, `.[aws]`).

Nothing else imports this package, so a server (gunicorn, `make run`) never loads it or the
platforms' libraries. Each entry point builds the app once, when the platform loads it (a
cold start), with `cold_start.build_app`.
"""
