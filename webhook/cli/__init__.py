"""The operator's commands: `prunehook ...` (main.py), and the same under
`flask --app wsgi ...`. Each module holds one job's commands; shown.py says what they
print to people. webhook.commands names them, so that each is imported only when it runs."""
