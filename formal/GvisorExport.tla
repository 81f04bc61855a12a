----------------------------- MODULE GvisorExport -----------------------------
\* TLC-only wrapper around Gvisor, for trace export: in simulation mode
\* (-simulate) every simulated behaviour is written to its own ITF JSON file
\* <OutDir>/trace_w<worker>_<n>.itf.json. Gvisor.tla itself stays free of
\* TLC-only operators. Run by `python -m tools.tla traces` (make traces).
EXTENDS Gvisor, TLC, TLCExt, ITF

\* The output directory: the Java property tlc.itf.dir (-Dtlc.itf.dir=DIR).
\* TLCGet returns the key itself when the property is unset.
OutDir ==
    LET d == TLCGet("-Dtlc.itf.dir")
    IN IF d = "-Dtlc.itf.dir" THEN "." ELSE d

\* Steered runs (Java property tlc.itf.failing=M): only machine M's steps may
\* fail ("none": no step fails), to reach failures late in long behaviours that
\* uniform random simulation seldom gets to. Unset ("any"): every behaviour.
\* A failure is a Fail step or Lost.
Failing ==
    LET f == TLCGet("-Dtlc.itf.failing")
    IN IF f = "-Dtlc.itf.failing" THEN "any" ELSE f

FailureActions == {"Fail", "Lost"}

\* Used as  ACTION_CONSTRAINT Steer  (TRUE for every step when Failing = "any").
Steer == Failing = "any" \/ event'.name \notin FailureActions \/ event'.m = Failing

\* The trace's #meta: the module to replay it against, and how TLC made it.
ExportMeta ==
    ITFDefaultMeta("Gvisor.tla")
        @@ [module |-> "Gvisor",
            seed |-> TLCGet("config").seed,
            depth |-> TLCGet("config").depth,
            failing |-> Failing,
            behaviour |-> TLCGet("diameter")]

\* Used as  CONSTRAINT ExportITF  (always TRUE: it never restricts the search).
\* TLCDefer runs it once the simulator has picked the successor, so the file
\* holds exactly the simulated behaviour. It is rewritten after every step and
\* so ends up complete however the behaviour ended (depth bound or a terminal
\* state, with -deadlock).
ExportITF == TLCDefer(ITFWriteTrace(ITFTraceFileName(OutDir), ExportMeta))
=============================================================================
