"""tla-py: the TLA+ tooling, run as `python -m tools.tla verify|check|conform|traces|coverage`
(__main__.py says what each command does).

    errors      ToolError, and die(): the message and exit status of a command that cannot go on
    specs       the specs in formal/, their .cfg entries and Next actions, machines' parameters
    checkers    running TLC and Apalache
    checker     the built-in checker (pure Python): parser, evaluator, breadth-first search
    check       the check and conform commands: the built-in checker on the specs and traces
    behaviours  ITF trace files and the steps they take
    verify      the verify command
    coverage    the coverage command: steps taken against the steps the model can reach
    traces      the traces command: seeded simulation, selection, replay
"""
